"""The compare section (grid expansion, validation naming the field), a variant as the eval stage's config and as a
pipeline config, and the comparison record: best per column by direction, disagreements, cost, storage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eval.comparison.report import ComparedRun, build_comparison
from eval.comparison.store import comparison_uri, load_comparison, store_comparison
from eval.comparison.variants import candidate_config, plan_variants, variant_label
from eval.runner import SampleRecord
from eval.schemas import RagEvalReport
from llmops.config import ModelPrice, load_config, parse_config
from llmops.errors import ConfigError, EvalDataError
from llmops.release.registry import ReleaseRegistry

BASE = {
    "corpus": {"sources": [{"kind": "directory", "path": "docs"}]},
    "embedding": {"model": "m"},
    "llm": {"model": "tiny", "backend": "transformers"},
    "sampling": {"max_tokens": 32, "temperature": 0.0},
}
TERSE = {"templates": {"en": {"system": "Be terse.", "user": "{contexts}\n{question}"}}, "fallback_language": "en"}
PROVIDER = {"kind": "openai", "base_url": "https://api.example.com/v1?key=secret", "model": "gpt-x",
            "tokenizer": "tiny", "api_key_env": "LLMOPS_PROVIDER_API_KEY",
            "price": {"prompt_per_1k": 0.15, "completion_per_1k": 0.6}}


def cfg_with(compare: dict, **extra):
    return parse_config({**BASE, **extra, "compare": compare})


def errors(compare: dict, **extra) -> str:
    with pytest.raises(ConfigError) as e:
        cfg_with(compare, **extra)
    return str(e.value)


def test_grid_is_the_product_in_written_order_and_a_left_out_axis_is_the_configs():
    cfg = cfg_with({"variants": {"prompts": {"cite": {}, "terse": TERSE},
                                 "models": {"self": {"kind": "release"}, "gpt": PROVIDER},
                                 "sampling": {"greedy": {}, "warm": {"temperature": 0.7}}}})
    names = [v.name for v in cfg.compare.expand()]
    assert names == [f"{p}/{m}/{s}" for p in ("cite", "terse") for m in ("self", "gpt") for s in ("greedy", "warm")]
    two = cfg_with({"variants": {"sampling": {"a": {"max_tokens": 8}, "b": {}}}})
    assert [v.name for v in two.compare.expand()] == ["config/config/a", "config/config/b"]


def test_explicit_list_of_variants():
    cfg = cfg_with({"variants": [{"name": "mine"}, {"name": "theirs", "model": PROVIDER, "prompt": TERSE}]})
    mine, theirs = cfg.compare.expand()
    assert (mine.name, mine.model, mine.prompt_name) == ("mine", None, "config")
    assert theirs.model.model == "gpt-x" and theirs.prompt_name == "theirs"


@pytest.mark.parametrize("compare, field, fix", [
    ({"variants": {"prompts": {}}}, "compare.variants", "name at least one entry"),
    ({"variants": {"models": {"a b": {"kind": "release"}, "c": {"kind": "release"}}}}, "compare.variants",
     "invalid name(s) 'a b'"),
    ({"variants": {"models": {"x": {"kind": "azure"}, "y": {"kind": "release"}}}}, "compare.variants.models.x",
     "unknown kind 'azure'; allowed: openai, release"),
    ({"variants": {"models": {"x": {"kind": "openai", "model": "m"}}}}, "compare.variants.models.x.base_url",
     "required field is missing"),
    ({"variants": {"sampling": {"hot": {"temprature": 1.0}, "b": {}}}}, "compare.variants.sampling.hot.temprature",
     "unknown field"),
    ({"variants": {"sampling": {"only": {}}}}, "compare", "at least 2 variants"),
    ({"variants": [{"name": "a"}, {"name": "a"}]}, "compare", "duplicate name(s) a"),
    ({"variants": [{"name": "a/b"}, {"name": "c"}]}, "compare.variants.0.name", "String should match pattern"),
    ({"variants": {"sampling": {"a": {}, "b": {}}}, "max_concurrency": 0}, "compare.max_concurrency",
     "greater than or equal to 1"),
])
def test_bad_compare_sections_are_reported_naming_the_field(compare, field, fix):
    message = errors(compare)
    assert f"{field}: " in message and fix in message


def test_a_variant_on_the_configs_llm_needs_one():
    message = errors({"variants": {"sampling": {"a": {}, "b": {}}}}, llm=None)
    assert "config/config/a" in message and "add an llm section" in message


def test_unknown_variant_names_the_ones_there_are():
    cfg = cfg_with({"variants": {"sampling": {"a": {}, "b": {}}}})
    with pytest.raises(ConfigError, match="no variant named 'c'; have: config/config/a, config/config/b"):
        cfg.compare.variant("c")


def test_a_variant_replaces_llm_prompt_and_sampling_and_nothing_else():
    cfg = cfg_with({"variants": {"prompts": {"terse": TERSE}, "models": {"self": {"kind": "release"}, "gpt": PROVIDER},
                                 "sampling": {"warm": {"temperature": 0.7}}}})
    own, provider = plan_variants(cfg)
    assert own.config.llm == cfg.llm and own.endpoint == "self-hosted" and own.price is None
    assert own.config.prompt.templates["en"].system == "Be terse."
    # the override changes only the field it names
    assert own.config.sampling.temperature == 0.7 and own.config.sampling.max_tokens == 32
    assert own.config.retrieval == cfg.retrieval and own.config.compare is None
    llm = provider.config.llm
    assert (llm.base_url, llm.served_model_name, llm.model) == (PROVIDER["base_url"], "gpt-x", "tiny")
    assert provider.endpoint == "https://api.example.com"  # never the query (keys travel there)
    assert provider.label == "terse+gpt+warm" == variant_label(provider.name)


def test_overrides_survive_the_config_json_every_task_decodes():
    from llmops.config import PipelineConfig

    cfg = cfg_with({"variants": {"sampling": {"greedy": {}, "warm": {"temperature": 0.7}}}})
    decoded = PipelineConfig.model_validate_json(cfg.model_dump_json())
    greedy, warm = plan_variants(decoded)
    assert greedy.config.sampling == cfg.sampling
    assert warm.config.sampling == cfg.sampling.model_copy(update={"temperature": 0.7})


def test_a_release_alias_is_its_base_model_and_adapter(tmp_path):
    cfg = cfg_with({"variants": {"models": {"prod": {"kind": "release", "alias": "production"},
                                            "own": {"kind": "release"}}}},
                   artifacts={"root": str(tmp_path)})
    with pytest.raises(ConfigError, match="alias 'production' points at no release"):
        plan_variants(cfg)
    registry = ReleaseRegistry(cfg.artifacts.registry_root)
    release = registry.register(
        index_version="idx", index_uri="i", base_model="base-model",
        adapter_version="ad-1", adapter_uri="s3://b/adapters/ad-1", eval_report_uri="r", gate_decision_uri=None,
        gates_passed=True, metrics={}, config={}, git_sha="g", flyte_execution_id=None)
    registry.promote(release.release, "production")
    prod, own = plan_variants(cfg)
    assert (prod.config.llm.model, prod.adapter_uri, prod.adapter_version) == ("base-model", "s3://b/adapters/ad-1",
                                                                                 "ad-1")
    assert own.adapter_uri is None and own.config.llm.model == "tiny"


def test_export_writes_a_pipeline_config_whose_candidate_is_the_variant(tmp_path):
    cfg = cfg_with({"variants": {"prompts": {"terse": TERSE}, "models": {"gpt": PROVIDER, "self": {"kind": "release"}}}},
                   finetune={"enabled": True, "train_path": "t.jsonl"})
    exported = candidate_config(cfg, "terse/gpt/config")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(exported.model_dump(mode="json", exclude={"compare"})))
    back = load_config(path)
    assert back.compare is None and back.llm.served_model_name == "gpt-x"
    assert back.prompt.templates["en"].system == "Be terse."
    assert not back.finetune.enabled  # a provider's model cannot be fine-tuned here
    assert candidate_config(cfg, "terse/self/config").finetune.enabled


# --- the comparison record -------------------------------------------------------------------------------------


def report(label: str, rouge: float | None, refusal_rate: float) -> RagEvalReport:
    return RagEvalReport.model_validate({
        "label": label, "created_at": "2026-01-01T00:00:00+00:00", "generation_seconds": 2.0, "config": {},
        "lineage": {"index_version": "idx-1", "git_sha": "g", "code_version": "c"}, "questions": 3,
        "index_version": "idx-1", "primary_metric": "rouge_l", "seconds": 3.0,
        "model": {"name": label, "base": label, "adapter_version": None, "adapter_uri": None,
                  "backend": "transformers", "random_weights": True},
        "metrics": {"rouge_l": {"value": rouge, "higher_is_better": True, "reason": None},
                    "answerability.refusal_rate_answerable": {"value": refusal_rate, "higher_is_better": False,
                                                              "reason": None}},
        "latency": {"p50_s": 0.4, "p95_s": 0.6}, "samples": "samples.parquet",
    })


def sample(qid: str, answer: str, source: str, refusal: str | None = None, latency: float = 0.1) -> SampleRecord:
    return SampleRecord(qid=qid, question=f"question {qid}", lang="en", answer=answer, references=["ref"],
                        contexts=["c"], sources=[{"source": source, "doc_id": source}], reference_contexts=[],
                        retrieval_hit=True, retrieval_s=0.01, latency_s=latency, first_token_s=None,
                        prompt_tokens=1000, completion_tokens=100, finish_reason="stop", refusal_kind=refusal)


def runs() -> list[ComparedRun]:
    a = [sample("q1", "Mount Etna is in Sicily", "etna.md"), sample("q2", "It opened in 1964", "rail.md"),
         sample("q3", "green tea leaves ground", "tea.md", latency=0.3)]
    b = [sample("q1", "Mount Etna is in Sicily", "etna.md", latency=0.2),
         sample("q2", "bananas are yellow fruit", "rail.md", latency=0.2),
         sample("q3", "not in the documents", "fuji.md", refusal="not_in_documents", latency=0.2)]
    return [
        ComparedRun("cite/gpt/greedy", report("a", 0.4, 0.2), a, "a/report.json", price=ModelPrice(
            prompt_per_1k=0.5, completion_per_1k=2.0)),
        ComparedRun("terse/self/greedy", report("b", None, 0.1), b, "b/report.json"),
    ]


def test_best_per_column_follows_the_metrics_direction_and_skips_unmeasured():
    r = build_comparison(runs(), disagreement_rouge_l=0.5, created_at="t")
    best = {c.name: c.best for c in r.columns}
    assert best["rouge_l"] == ("cite/gpt/greedy",)  # the other was not measured: never "best"
    assert best["answerability.refusal_rate_answerable"] == ("terse/self/greedy",)  # lower is better
    assert best["latency_p50_s"] == ("cite/gpt/greedy",) and best["latency_p95_s"] == ("terse/self/greedy",)
    assert best["cost"] == ("cite/gpt/greedy",)  # the only priced one


def test_cost_is_tokens_times_the_price_per_1k():
    r = build_comparison(runs(), disagreement_rouge_l=0.5, created_at="t")
    priced, unpriced = r.variants
    assert priced.cost == pytest.approx(3 * (1000 / 1000 * 0.5 + 100 / 1000 * 2.0)) and priced.currency == "USD"
    assert unpriced.cost is None and unpriced.prompt_tokens == 3000
    assert r.per_question[0].answers["cite/gpt/greedy"].cost == pytest.approx(0.7)


def test_disagreements_refusal_top_source_and_low_rouge():
    r = build_comparison(runs(), disagreement_rouge_l=0.5, created_at="t")
    kinds = {q.qid: q.disagreement.kinds for q in r.per_question}
    assert kinds == {"q1": (), "q2": ("answer",), "q3": ("refusal", "top_source")}
    assert r.per_question[0].disagreement.min_rouge_l == pytest.approx(1.0)
    assert r.per_question[2].disagreement.min_rouge_l is None  # one answer left: nothing to compare it with
    assert r.disagreement_counts() == {"refusal": 1, "top_source": 1, "answer": 1, "any": 2}


def test_a_comparison_needs_two_named_runs_on_one_index():
    a, b = runs()
    with pytest.raises(EvalDataError, match="at least 2 distinctly named"):
        build_comparison([a, ComparedRun(a.name, b.report, b.samples, "x")], disagreement_rouge_l=0.5, created_at="t")
    other = b.report.model_copy(update={"index_version": "idx-2"})
    with pytest.raises(EvalDataError, match="different indexes"):
        build_comparison([a, ComparedRun(b.name, other, b.samples, "x")], disagreement_rouge_l=0.5, created_at="t")


def test_store_and_load_under_comparisons_with_a_confined_id(tmp_path):
    cfg = cfg_with({"variants": {"sampling": {"a": {}, "b": {}}}}, artifacts={"root": str(tmp_path)})
    r = build_comparison(runs(), disagreement_rouge_l=0.5, created_at="t")
    uri = store_comparison(cfg, r)
    assert Path(uri) == tmp_path / "comparisons" / r.id / "comparison.json"
    assert load_comparison(comparison_uri(cfg, r.id)) == r
    for bad in ("../../etc", "cmp-../x", "x", f"comparisons/{r.id}/../x/comparison.json"):
        with pytest.raises(EvalDataError, match="is not a comparison id"):
            comparison_uri(cfg, bad)
    # the path the compare workflow prints (or its folder) names its id, under the config's root
    for printed in (uri, str(Path(uri).parent), f"/elsewhere/comparisons/{r.id}/"):
        assert comparison_uri(cfg, printed) == comparison_uri(cfg, r.id)
