import json
import shutil

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import REPO_ROOT, write_corpus
from tests.helpers import CORPUS, build, make_config

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS))
    out, _, _ = build(cfg)
    return cfg, out


@pytest.fixture(scope="module")
def index_dir(built):
    return built[1].artifact_uri


def test_validate_config_ok_and_error_exit_code(tmp_path):
    ok = runner.invoke(app, ["validate-config", str(REPO_ROOT / "configs/quickstart.yaml")])
    assert ok.exit_code == 0 and '"shard_size": 16' in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: {sources: []}\nembedding: {model: m, batch_size: -1}\n")
    res = runner.invoke(app, ["validate-config", str(bad)])
    assert res.exit_code == 2
    assert "corpus.sources" in res.output and "embedding.batch_size" in res.output


def test_search_and_verify(index_dir, tmp_path):
    res = runner.invoke(app, ["search", index_dir, "matcha green tea powder", "--k", "2", "--mode", "lexical"])
    assert res.exit_code == 0 and "tea.txt" in res.output
    assert runner.invoke(app, ["verify", index_dir]).exit_code == 0

    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    (broken / "vectors.faiss").unlink()
    res = runner.invoke(app, ["verify", str(broken)])
    assert res.exit_code == 2 and "vectors.faiss: missing" in res.output


def test_search_lexical_on_a_dense_only_index_is_a_clear_error(tmp_path):
    cfg = make_config(tmp_path, write_corpus(tmp_path / "corpus", CORPUS), lexical={"enabled": False},
                      retrieval={"mode": "dense"})
    out, _, _ = build(cfg)
    res = runner.invoke(app, ["search", out.artifact_uri, "green tea", "--mode", "lexical"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)  # an error line, not a traceback
    assert "built without a lexical index" in res.output and "Use mode 'dense'" in res.output


def test_eval_retrieval_writes_json(index_dir, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Which railway opened in 1964?", "answers": ["Shinkansen"]}) + "\n")
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["eval-retrieval", "--index", index_dir, "--qa", str(qa), "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["modes"]["lexical"]["metrics"]["recall@1"] == 1.0
    assert report["questions"] == 1


QUESTIONS = [
    ("Which railway opened in 1964?", "Shinkansen"),
    ("Which volcano in Sicily is one of the most active?", "Etna"),
    ("What is matcha?", "powder"),
    ("Which plant are green tea leaves from?", "Camellia sinensis"),
    ("What rises through the vents of a volcano?", "Magma"),
    ("Between which cities did the first Shinkansen line run?", "Tokyo"),
    ("Where does matcha come from?", "Japan"),
    ("What is a volcano?", "rupture"),
    ("富士山の標高は？", "3776メートル"),
    ("富士山はいつ世界文化遺産に登録された？", "2013年"),
    ("握り寿司はいつ広まった？", "江戸時代"),
    ("寿司は何と魚介類を組み合わせる？", "酢飯"),
]


def test_eval_retrieval_excludes_the_calibration_fraction_recorded_in_the_manifest(tmp_path):
    from llmops.corpus.qa import read_qa
    from llmops.index.artifact import read_manifest
    from llmops.index.tuning import split_calibration

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answers": [a]}, ensure_ascii=False) + "\n"
                          for q, a in QUESTIONS), encoding="utf-8")
    fraction, default_fraction = 0.6, 0.3
    examples = read_qa(qa)
    calibration, held_out = split_calibration(examples, fraction)
    assert len(calibration) != len(split_calibration(examples, default_fraction)[0])  # the fractions are told apart
    cfg = make_config(tmp_path, write_corpus(tmp_path / "corpus", CORPUS),
                      retrieval={"fusion": {"dense_weight": "auto"}},
                      eval={"qa_path": str(qa), "calibration_fraction": fraction})
    out, _, _ = build(cfg)
    fusion = read_manifest(out.artifact_uri).retrieval.fusion
    assert fusion.tuned and fusion.calibration_fraction == fraction and fusion.calibration_questions == len(calibration)

    report_path = tmp_path / "report.json"
    res = runner.invoke(app, ["eval-retrieval", "--index", out.artifact_uri, "--qa", str(qa),
                              "--out", str(report_path)])
    assert res.exit_code == 0, res.output
    report = json.loads(report_path.read_text())
    assert report["excluded_calibration_questions"] == len(calibration)
    assert report["questions"] == len(held_out)


def test_eval_retrieval_bad_eval_set_names_the_line(index_dir, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "ok", "answers": ["a"]}\n{"question": 3}\n')
    res = runner.invoke(app, ["eval-retrieval", "--index", index_dir, "--qa", str(qa)])
    assert res.exit_code == 2 and "line 2" in res.output


def test_registry_commands_promote_show_diff_rollback(built, tmp_path):
    from llmops.release.registry import ReleaseRegistry
    from llmops.release.artifacts import pin_artifacts
    from tests.llmops.release.test_registry import release_fields

    cfg, out = built
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(cfg.model_dump(mode="json")))  # its artifacts.root confines what is promoted
    root = str(tmp_path / "registry")
    reg = ReleaseRegistry(root)
    index = {"index_version": out.version, "index_uri": out.artifact_uri, **pin_artifacts(out.artifact_uri, None)}
    good = reg.register(**release_fields(**index)).release
    failed = reg.register(**release_fields(passed=False, rouge=0.3, **index)).release
    unchecked = reg.register(**release_fields(passed=False, rouge=0.2, **index, gate_outcome={
        "passed": 0, "failed": 0, "skipped": 2, "summary": "failed: nothing was checked: all 2 gates skipped"})).release

    def run(*args):
        return runner.invoke(app, ["registry", *args, "--root", root, "--config", str(config)])

    assert run("promote", good).exit_code == 0
    refused = run("promote", failed)
    assert refused.exit_code == 2 and "--force --reason" in " ".join(refused.output.split())  # rich wraps lines
    assert run("promote", failed, "--force").exit_code == 2  # no reason
    forced = run("promote", failed, "--force", "--reason", "demo")
    assert forced.exit_code == 0 and f"production -> {failed}" in forced.output

    listed = run("list")
    assert good in listed.output and failed in listed.output  # ids are never cut
    assert _cell(listed.output, failed, column=5).replace(" ", "") == "production"  # rich may fold a narrow cell
    gates = _cell(listed.output, unchecked, column=4)
    assert gates == "failed: nothing was checked (2 of 2 gates skipped)"  # never listed as a pass
    shown = json.loads(run("show", unchecked).output)["release"]
    assert shown["gate_outcome"]["skipped"] == 2 and "nothing was checked" in shown["gate_outcome"]["summary"]
    shown = json.loads(run("show", "production").output)
    assert shown["release"]["release"] == failed and shown["history"][-1]["reason"] == "demo"
    diff = json.loads(run("diff", good, failed).output)
    assert diff["changed"]["gates"] == ["passed", "failed"] and diff["metrics"]["rouge_l"]["to"] == 0.3

    back = run("rollback")
    assert back.exit_code == 0 and reg.resolve("production").release == good


def _cell(table: str, release: str, column: int) -> str:
    """The text of one cell of a rich table, joined across the lines it wraps over."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if release in line)
    parts = []
    for line in lines[start:]:
        cells = [c.strip() for c in line.split("\u2502")[1:-1]]
        if not cells or (parts and cells[0]):  # a border, or the next release's row
            break
        parts.append(cells[column])
    return " ".join(p for p in parts if p)
