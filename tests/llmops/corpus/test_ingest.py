"""The ingest stage on messy inputs: every format, every skip reason, de-duplication and the errors users see."""

from __future__ import annotations

import codecs
import io
import json
import re
import unicodedata
from pathlib import Path

import datasets
import fsspec
import pytest
from pypdf import PdfReader, PdfWriter

from llmops.config import CorpusConfig
from llmops.corpus.documents import content_id
from llmops.errors import IngestError
from llmops.corpus.ingest import IngestResult, ingest_corpus
from llmops.corpus.ingest.report import INGEST_REPORT_SCHEMA_VERSION, read_ingest_report
from tests.conftest import REPO_ROOT, shared_file

# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def ingest(*sources: dict, min_chars: int = 1) -> IngestResult:
    return ingest_corpus(CorpusConfig.model_validate({"sources": list(sources), "min_chars": min_chars}))


def directory(path: Path | str, **options) -> dict:
    return {"kind": "directory", "path": str(path), **options}


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    return root


def by_name(result: IngestResult) -> dict:
    return {Path(d.source).name: d for d in result.documents}


def skip_reasons(result: IngestResult) -> dict[str, str]:
    return {Path(s.source).name: s.reason for s in result.report.skipped}


def text_pdf(*pages: str) -> bytes:
    """A minimal PDF with one line of Helvetica text per page, xref offsets exact."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# directory sources: formats
# ---------------------------------------------------------------------------------------------------------------


def test_text_is_normalized_and_ids_are_content_hashes(tmp_path):
    messy = "Cafe\u0301 menu  \r\nline two\t\r\n\r\n\r\n\r\n\r\nＡＢＣ ｶﾀｶﾅ\rend\n\n"
    res = ingest(directory(write(tmp_path, {"notes.txt": messy})))
    (doc,) = res.documents
    # NFC composes the accent; full-width and half-width characters stay as typed (no NFKC)
    assert doc.text == "Caf\u00e9 menu\nline two\n\nＡＢＣ ｶﾀｶﾅ\nend"
    assert unicodedata.is_normalized("NFC", doc.text)
    assert doc.doc_id == content_id(doc.text)
    assert (doc.title, doc.lang, doc.metadata) == ("notes", "en", {"format": "txt"})
    assert doc.source == f"{tmp_path}/notes.txt"


def test_markdown_keeps_text_and_takes_title_from_first_h1(tmp_path):
    md = "Intro line.\n\n```bash\n# not a title\n```\n\n## Sub\n\n# Real  Title #\n\n- item *one*\n"
    no_heading = "Just text, **bold** kept."
    res = ingest(directory(write(tmp_path, {"guide.md": md, "plain.md": no_heading})))
    docs = by_name(res)
    assert docs["guide.md"].title == "Real Title"
    assert docs["guide.md"].text == md.strip()  # markdown syntax is content, nothing stripped
    assert docs["guide.md"].metadata == {"format": "md"}
    assert docs["plain.md"].title == "plain"


def test_html_main_text_and_title(tmp_path):
    html = (
        "<html><head><title>  Release   Notes </title><script>var tracking = 1;</script></head><body>"
        "<nav>Home | Docs</nav><main><h1>Version 2</h1>"
        "<p>Version 2 adds job priorities so urgent work starts first on a busy cluster.</p>"
        "<p>Uploads larger than five gigabytes now use multipart transfers and no longer time out.</p>"
        "</main><footer>Copyright</footer></body></html>"
    )
    res = ingest(directory(write(tmp_path, {"notes.html": html})))
    (doc,) = res.documents
    assert doc.title == "Release Notes"
    assert "urgent work starts first" in doc.text and "multipart transfers" in doc.text
    assert "tracking" not in doc.text
    assert doc.metadata == {"format": "html", "extractor": "trafilatura"}


def test_html_falls_back_to_plain_text_when_trafilatura_finds_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("llmops.corpus.ingest.formats.trafilatura.extract", lambda *a, **k: None)
    html = (
        "<html><head><title>Table page</title><style>td {}</style></head><body>"
        "<table><tr><td>port</td><td>8443</td></tr></table><p>second   block</p><script>x()</script></body></html>"
    )
    res = ingest(directory(write(tmp_path, {"t.htm": html})))
    (doc,) = res.documents
    assert doc.metadata == {"format": "html", "extractor": "plain"}
    assert doc.title == "Table page"
    assert "8443" in doc.text and "second block" in doc.text
    assert "x()" not in doc.text and "td {}" not in doc.text and "Table page" not in doc.text


def test_pdf_pages_are_joined_with_blank_lines(tmp_path):
    res = ingest(directory(write(tmp_path, {"manual.pdf": text_pdf("Hello from page one", "Page two says goodbye")})))
    (doc,) = res.documents
    assert doc.text == "Hello from page one\n\nPage two says goodbye"
    assert (doc.title, doc.metadata) == ("manual", {"format": "pdf", "pages": "2"})


def test_bad_pdfs_are_skipped_with_reasons(tmp_path):
    files = {
        "locked.pdf": encrypted(text_pdf("top secret"), user_password="pw"),
        "owner_only.pdf": encrypted(text_pdf("readable without a password"), user_password=""),
        "broken.pdf": b"%PDF-1.4\nthis is not really a pdf",
        "scan.pdf": text_pdf(""),
    }
    res = ingest(directory(write(tmp_path, files)))
    assert [d.text for d in res.documents] == ["readable without a password"]
    reasons = skip_reasons(res)
    assert reasons["locked.pdf"] == "encrypted PDF (needs a password)"
    assert reasons["broken.pdf"].startswith("unreadable PDF (")
    assert "no text layer" in reasons["scan.pdf"]


# ---------------------------------------------------------------------------------------------------------------
# directory sources: what is skipped, and why
# ---------------------------------------------------------------------------------------------------------------


def test_unusable_files_are_skipped_and_the_rest_ingested(tmp_path):
    files = {
        "good.md": "# Good\n\nUseful text.",
        "bom.txt": codecs.BOM_UTF8 + b"UTF-8 with a byte order mark",
        "utf16.txt": codecs.BOM_UTF16_LE + "UTF-16 text: 日本語".encode("utf-16-le"),
        "image.txt": b"GIF89a\x00\x01\x02binary",
        "latin1.txt": b"ok so far, then caf" + "é".encode("latin-1") + b" end",
        "empty.md": "",
        "spaces.txt": "  \n\t\n \u3000 \n",
        "report.docx": b"PK\x03\x04",
        "README": "no extension",
        "big.txt": "x" * 2000,
        ".hidden.md": "hidden file",
        ".git/config.txt": "hidden folder",
        "sub/.cache/x.md": "nested hidden folder",
    }
    res = ingest(directory(write(tmp_path, files), max_file_bytes=1000))
    docs = by_name(res)
    assert sorted(docs) == ["bom.txt", "good.md", "utf16.txt"]
    assert docs["bom.txt"].text == "UTF-8 with a byte order mark"  # BOM stripped, not part of the id
    assert docs["utf16.txt"].text == "UTF-16 text: 日本語"
    assert skip_reasons(res) == {
        "image.txt": "binary file (contains NUL bytes)",
        "latin1.txt": "not valid UTF-8 at byte 19 (convert the file to UTF-8; other encodings are not guessed)",
        "empty.md": "no text",
        "spaces.txt": "no text",
        "report.docx": "unsupported extension .docx",
        "README": "unsupported extension (none)",
        "big.txt": "file is 2000 bytes, over max_file_bytes=1000",
    }
    assert res.report.files_seen == 10  # hidden files are ignored silently, not counted or reported
    assert res.report.documents == 3


def test_min_chars_counts_non_space_characters(tmp_path):
    res = ingest(directory(write(tmp_path, {"short.txt": "a b c", "long.txt": "abcdef"})), min_chars=4)
    assert list(by_name(res)) == ["long.txt"]
    assert skip_reasons(res) == {"short.txt": "only 3 non-space characters (min_chars=4)"}


def test_include_globs_and_sorted_order(tmp_path):
    root = write(tmp_path, {"b.md": "B", "a.md": "A", "docs/z.md": "Z", "docs/deep/y.md": "Y", "docs/x.txt": "X"})
    everything = ingest(directory(root))
    assert [Path(d.source).relative_to(root).as_posix() for d in everything.documents] == [
        "a.md", "b.md", "docs/deep/y.md", "docs/x.txt", "docs/z.md"
    ]  # fmt: skip
    only_docs_md = ingest(directory(root, include=["docs/**/*.md"]))
    assert [d.text for d in only_docs_md.documents] == ["Y", "Z"]
    assert only_docs_md.report.files_seen == 2


def test_fsspec_uri_reads_like_a_local_folder():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/ingest-test/a.md": b"# Remote\n\nfrom memory", "/ingest-test/b.bin": b"\x00"})
    try:
        res = ingest(directory("memory://ingest-test"))
    finally:
        fs.rm("/ingest-test", recursive=True)
    (doc,) = res.documents
    assert (doc.title, doc.source) == ("Remote", "memory://ingest-test/a.md")
    assert [(s.source, s.reason) for s in res.report.skipped] == [
        ("memory://ingest-test/b.bin", "unsupported extension .bin")
    ]


# ---------------------------------------------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------------------------------------------


def test_jsonl_records_fields_and_bad_lines(tmp_path):
    lines = [
        json.dumps({"body": "First doc", "name": "One", "uid": 7, "lang": "en", "score": 0.5, "ok": True,
                    "tags": ["x"], "extra": None}),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"name": "no body"}),
        json.dumps({"body": 42}),
        json.dumps({"body": "Second doc"}),
    ]  # fmt: skip
    path = tmp_path / "docs.jsonl"
    path.write_bytes("\n".join(lines).encode() + b'\n{"body": "bad \xff byte"}\n')
    res = ingest({"kind": "jsonl", "path": str(path), "text_field": "body", "title_field": "name", "id_field": "uid"})
    first, second = res.documents
    assert (first.text, first.title, first.source) == ("First doc", "One", f"{path}#line=1")
    # other scalars become string metadata; the id is kept as source_id; lists and nulls are dropped
    assert first.metadata == {"source_id": "7", "lang": "en", "score": "0.5", "ok": "true"}
    assert (second.title, second.source, second.metadata) == ("", f"{path}#line=7", {})
    skipped = {s.source.rsplit("#", 1)[1]: s.reason for s in res.report.skipped}
    assert skipped.keys() == {"line=3", "line=4", "line=5", "line=6", "line=8"}
    assert skipped["line=3"].startswith("invalid JSON (")
    assert skipped["line=4"] == "expected a JSON object, got list"
    assert skipped["line=5"] == "missing field 'body'"
    assert skipped["line=6"] == "field 'body' is a number, not a string"
    assert skipped["line=8"].startswith("not valid UTF-8 at byte")
    assert res.report.files_seen == 1


# ---------------------------------------------------------------------------------------------------------------
# SQuAD
# ---------------------------------------------------------------------------------------------------------------


def squad_file(tmp_path: Path, data: list) -> Path:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")
    return path


def test_squad_contexts_questions_and_gold_links(tmp_path):
    data = [
        {
            "title": "東京",
            "paragraphs": [
                {
                    "context": "東京 [SEP] 東京は日本の首都である。",
                    "qas": [
                        {"id": "q1", "question": "日本の首都は？", "answers": [{"text": "東京"}, {"text": " 東京"},
                                                                                {"text": "東京都"}]},
                        {"id": "q2", "question": "", "answers": [{"text": "x"}]},
                        {"id": "q3", "question": "no answers?", "answers": [], "is_impossible": True},
                        {"id": "q4", "question": "bad answers", "answers": "東京"},
                        {"id": "q5", "question": "empty?", "answers": []},
                        {"id": "q6", "question": "both?", "answers": [{"text": "東京"}], "is_impossible": True},
                    ],
                },
                {"context": "   ", "qas": [{"id": "q5", "question": "orphan?", "answers": [{"text": "a"}]}]},
            ],
        },
        {
            "title": "Copy",
            "paragraphs": [
                {"context": "Copy [SEP] 東京は日本の首都である。", "qas": [{"id": 6, "question": "Again?",
                                                                        "answers": [{"text": "首都"}]}]}
            ],
        },
    ]  # fmt: skip
    path = squad_file(tmp_path, data)
    res = ingest({"kind": "squad", "path": str(path), "strip_title_prefix": True})

    (doc,) = res.documents  # the second article's context is an exact duplicate once its prefix is stripped
    assert (doc.text, doc.title, doc.lang) == ("東京は日本の首都である。", "東京", "ja")
    assert doc.source == f"{path}#article=0,paragraph=0"
    assert res.report.duplicates == [(f"{path}#article=1,paragraph=0", doc.source)]

    q1, q3, q6 = res.qa
    assert (q1.qid, q1.question, q1.answers, q1.lang) == ("q1", "日本の首都は？", ("東京", "東京都"), "ja")
    assert q1.gold_doc_id == doc.doc_id and q6.gold_doc_id == doc.doc_id
    assert q1.answerable and q6.answerable
    # SQuAD 2.0's unanswerable question is kept (it measures abstention), linked to the paragraph it was written on
    assert (q3.qid, q3.answers, q3.answerable, q3.gold_doc_id) == ("q3", (), False, doc.doc_id)
    assert q6.qid == "6"
    skipped = {s.source.rsplit(",", 1)[-1] if "qa=" in s.source else s.source: s.reason for s in res.report.skipped}
    assert skipped == {
        "qa=1": "missing or empty 'question'",
        "qa=3": "'answers' must be a list of objects with a string 'text'",
        "qa=4": "no answers",
        "qa=5": "'is_impossible' is true but it has answers",
        f"{path}#article=0,paragraph=1": "no text",
        "qa=0": "its context was skipped",
    }
    assert res.report.qa_examples == 3


def test_squad_title_prefix_is_kept_unless_asked(tmp_path):
    path = squad_file(tmp_path, [{"title": "T", "paragraphs": [{"context": "T [SEP] body", "qas": []}]}])
    assert ingest({"kind": "squad", "path": str(path)}).documents[0].text == "T [SEP] body"


@pytest.mark.parametrize(
    ("content", "at_fault"),
    [
        ({"version": "1"}, "$.data: required field is missing"),
        ({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}, "$.data[0].paragraphs[0].context: required"),
        ({"data": [{"title": "t", "paragraphs": {"context": "c"}}]}, "$.data[0].paragraphs: expected list, got dict"),
        ({"data": ["not an article"]}, "$.data[0]: expected an object, got str"),
    ],
)
def test_malformed_squad_file_names_the_json_path(tmp_path, content, at_fault):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(IngestError, match=re.escape(at_fault)) as err:
        ingest({"kind": "squad", "path": str(path)})
    assert str(path) in str(err.value)


def test_squad_file_that_is_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [')
    with pytest.raises(IngestError, match=re.escape(f"{path}: not valid JSON (line 1")):
        ingest({"kind": "squad", "path": str(path)})


def test_real_squad_dev_file():
    path = shared_file("squad/dev-v1.1-part.json")
    articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs = [p for a in articles for p in a["paragraphs"]]
    distinct_contexts = {p["context"].strip() for p in paragraphs}
    n_questions = sum(len(p["qas"]) for p in paragraphs)

    res = ingest({"kind": "squad", "path": str(path)})
    assert res.report.documents == len(distinct_contexts)
    assert len(res.report.duplicates) == len(paragraphs) - len(distinct_contexts)
    assert res.report.qa_examples == n_questions and not res.report.skipped
    doc_ids = {d.doc_id for d in res.documents}
    assert all(q.gold_doc_id in doc_ids for q in res.qa)
    texts = {d.doc_id: d.text for d in res.documents}
    assert all(any(a in texts[q.gold_doc_id] for a in q.answers) for q in res.qa)


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------------------------


def test_hf_dataset_from_save_to_disk_folder(tmp_path):
    rows = {"text": ["Alpha text", "Beta text", None], "title": ["A", "B", "C"], "year": [2020, 2021, 2022]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["train row"]}),
            "test": datasets.Dataset.from_dict({"text": ["test row"]}),
        }
    ).save_to_disk(str(tmp_path / "dict"))

    res = ingest({"kind": "hf_dataset", "path": str(tmp_path / "single")})
    assert [(d.text, d.title, d.metadata) for d in res.documents] == [
        ("Alpha text", "A", {"year": "2020"}),
        ("Beta text", "B", {"year": "2021"}),
    ]
    assert res.documents[0].source == f"{tmp_path / 'single'}#split=train,row=0"
    assert [s.reason for s in res.report.skipped] == ["field 'text' is null, not a string"]

    test_split = ingest({"kind": "hf_dataset", "path": str(tmp_path / "dict"), "split": "test"})
    assert [d.text for d in test_split.documents] == ["test row"]
    with pytest.raises(IngestError, match=r"no split 'validation' \(splits: train, test\)"):
        ingest({"kind": "hf_dataset", "path": str(tmp_path / "dict"), "split": "validation"})


def test_hf_dataset_from_local_jsonl_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"content": "One row", "heading": "H1", "n": 1}\n{"content": "Two row", "heading": "H2", "n": 2}\n'
    )
    res = ingest({"kind": "hf_dataset", "path": str(path), "text_field": "content", "title_field": "heading"})
    assert [(d.text, d.title, d.metadata) for d in res.documents] == [
        ("One row", "H1", {"n": "1"}),
        ("Two row", "H2", {"n": "2"}),
    ]
    with pytest.raises(IngestError, match=r"no column 'text' \(columns: content, heading, n\)"):
        ingest({"kind": "hf_dataset", "path": str(path)})


def test_hf_hub_id_offline_says_to_pass_a_local_path(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(IngestError, match=r"Hub is unreachable.*local path"):
        ingest({"kind": "hf_dataset", "path": "acme-test/does-not-exist"})


# ---------------------------------------------------------------------------------------------------------------
# across sources
# ---------------------------------------------------------------------------------------------------------------


def test_duplicates_across_sources_keep_the_first(tmp_path):
    root = write(tmp_path / "dir", {"a.txt": "Same text\n", "b.md": "Different text"})
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(json.dumps({"text": "Same text  \r\n"}) + "\n" + json.dumps({"text": "Third"}) + "\n")
    res = ingest(directory(root), {"kind": "jsonl", "path": str(jsonl)})
    assert [d.text for d in res.documents] == ["Same text", "Different text", "Third"]
    assert res.report.duplicates == [(f"{jsonl}#line=1", f"{root}/a.txt")]
    assert res.report.sources == [str(root), str(jsonl)]
    assert json.loads(res.report.model_dump_json())["duplicates"] == [[f"{jsonl}#line=1", f"{root}/a.txt"]]


def test_the_report_round_trips_through_its_schema(tmp_path):
    root = write(tmp_path / "dir", {"a.txt": "Same text", "b.md": "Same text", "c.txt": ""})
    report = ingest(directory(root)).report
    assert report.skipped and report.duplicates  # every section has something in it
    as_json = report.model_dump_json()
    assert read_ingest_report(as_json, "test") == report == read_ingest_report(json.loads(as_json), "test")
    assert json.loads(as_json)["schema_version"] == INGEST_REPORT_SCHEMA_VERSION


@pytest.mark.parametrize(
    "edit, refusal",
    [
        (lambda r: r.pop("schema_version"), "has schema_version None; this llmops reads 1. Re-run the ingest task"),
        (lambda r: r.update(documents="many"), "does not match the ingest report schema"),
        (lambda r: r.update(seconds=1.5), "does not match the ingest report schema"),  # timings stay out: it is a cache input
    ],
    ids=["unversioned", "wrong type", "unknown field"],
)
def test_a_foreign_report_is_refused_with_its_origin(tmp_path, edit, refusal):
    report = json.loads(ingest(directory(write(tmp_path, {"a.txt": "Some text"}))).report.model_dump_json())
    edit(report)
    with pytest.raises(IngestError, match=r"^task input x: the ingest report .*" + re.escape(refusal)):
        read_ingest_report(json.dumps(report), "task input x")


def test_ids_and_order_are_stable_across_runs(tmp_path):
    root = write(tmp_path, {"x.md": "# X\n\nEx", "y.txt": "Why", "z/z.html": "<title>Z</title><p>Zed page</p>"})
    first, second = ingest(directory(root)), ingest(directory(root))
    assert [d.doc_id for d in first.documents] == [d.doc_id for d in second.documents]
    assert [d.doc_id for d in first.documents] == [content_id(d.text) for d in second.documents]
    assert first.documents[0].doc_id == content_id("# X\n\nEx")


def test_nothing_usable_lists_sources_and_reasons(tmp_path):
    root = write(tmp_path, {f"bin{i:02d}.txt": b"\x00\x01" for i in range(12)} | {"e.md": ""})
    with pytest.raises(IngestError) as err:
        ingest(directory(root))
    message = str(err.value)
    assert "no usable documents" in message and f"directory: {root}" in message
    assert f"{root}/bin00.txt: binary file (contains NUL bytes)" in message
    assert "... and 3 more" in message


@pytest.mark.parametrize("kind", ["directory", "jsonl", "squad", "hf_dataset"])
def test_missing_source_path_is_an_error(tmp_path, kind):
    missing = tmp_path / "nope" / "corpus.jsonl"
    good = write(tmp_path / "ok", {"a.md": "fine"})
    with pytest.raises(IngestError, match=re.escape(f"corpus.sources[1] ({kind}) {missing}: no such")):
        ingest(directory(good), {"kind": kind, "path": str(missing)})


def test_source_of_the_wrong_shape_is_an_error(tmp_path):
    file = write(tmp_path, {"a.jsonl": "{}"}) / "a.jsonl"
    with pytest.raises(IngestError, match="is a file; a directory source needs a folder"):
        ingest(directory(file))
    with pytest.raises(IngestError, match="is a folder; a jsonl source needs a file"):
        ingest({"kind": "jsonl", "path": str(tmp_path)})


# ---------------------------------------------------------------------------------------------------------------
# the shipped quickstart corpus
# ---------------------------------------------------------------------------------------------------------------


def test_quickstart_corpus_answers_are_in_its_documents():
    quickstart = REPO_ROOT / "examples" / "quickstart"
    res = ingest(directory(quickstart / "corpus"))
    assert not res.report.skipped and not res.report.duplicates
    assert {d.metadata["format"] for d in res.documents} == {"md", "txt", "html"}
    assert sum(d.lang == "ja" for d in res.documents) == 3
    questions = [json.loads(line) for line in (quickstart / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    answerable = [q for q in questions if q.get("answerable", True)]
    assert len(answerable) < len(questions)  # the set also holds questions the documents do not answer
    for q in answerable:
        holders = {d.source for d in res.documents for a in q["answers"] if a in d.text}
        assert len(holders) == 1, (q["question"], holders)
