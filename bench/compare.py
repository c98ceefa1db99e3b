"""The compare workflow's wall time against the sum of single evaluations of the same variants.

4 variants (2 prompt templates x 2 sampling settings on the random tiny LLM, transformers backend, fp32 on CPU) x 24
questions of the quickstart eval set, on the quickstart corpus (MiniLM index, BLEU + ROUGE). All in one process,
with flytekit's local execution:

1. Warm-up: `resolve_config` and `index_stage` (builds the index once; later runs hit flytekit's local cache, as a
   re-run of the workflow would) and one single evaluation (loads the libraries).
2. Alternating, `--repeats` times: the whole `compare_models` workflow (config resolution, the cached index stage,
   the @dynamic map task over the 4 variants, `compare_report` with its Deck), and the same 4 variants evaluated
   one by one through `tasks.compare.evaluate_variant` (the eval stage on the same index, stored).

Target: compare <= 1.1 x the sum of the singles (the workflow adds only config resolution, cache lookups and the
comparison). Local map tasks run their items one after another; on a cluster `compare.max_concurrency` of them run
at once, which this machine cannot show.

    python -m bench.compare                 # 2 repeats (~6 min on 2 cores)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import (
    MODEL,
    QUICKSTART,
    TINY_LLM,
    TINY_LLM_SETTINGS,
    bench_parser,
    machine,
    offline_env,
    print_table,
    progress,
    result_header,
    summarize,
    write_result,
)

QUESTIONS = 24
TERSE = {"fallback_language": "en", "templates": {"en": {"system": "Answer in one short sentence.",
                                                          "user": "{contexts}\n\nQ: {question}\nA:"}}}


def config(root: Path) -> dict:
    return {
        "corpus": {"sources": [{"kind": "directory", "path": str(QUICKSTART / "corpus")}]},
        "chunking": {"max_tokens": 128, "overlap_tokens": 24},
        "embedding": {"model": MODEL, "shard_size": 64},
        "retrieval": {"k": 5, "fusion": {"dense_weight": 0.5}},
        "answerability": {"threshold": 0.0},  # fixed: no calibration split, every question is answered
        "eval": {"qa_path": str(QUICKSTART / "qa.jsonl"), "max_samples": QUESTIONS,
                 "metrics": {"bleu": True, "rouge": True, "ragas": {"enabled": False}}},
        "artifacts": {"root": str(root / "artifacts")},
        "llm": {"model": str(TINY_LLM), "backend": "transformers", **TINY_LLM_SETTINGS},
        "sampling": {"max_tokens": 32},
        "finetune": {"enabled": False},
        "compare": {"variants": {"prompts": {"cite": {}, "terse": TERSE},
                                 "sampling": {"greedy": {}, "short": {"max_tokens": 16}}}},
    }


def main() -> None:
    parser = bench_parser(__doc__, "compare")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    offline_env()
    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    os.environ["HOME"] = str(work / "home")  # flytekit's local cache: this run's only
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config(work), sort_keys=False), encoding="utf-8")

    from flytekit.types.file import FlyteFile

    from eval.comparison.store import load_comparison
    from eval.comparison.variants import plan_variants
    from llmops.config import PipelineConfig
    from tasks.compare import evaluate_variant
    from tasks.config import resolve_config
    from workflows.compare import compare_models
    from workflows.index import index_stage

    progress("warm-up: config, index (built once), one evaluation")
    resolved = resolve_config(config=FlyteFile(str(path)))
    idx = index_stage(config_json=resolved.config_json, stage_keys=resolved.stage_keys)
    plans = plan_variants(PipelineConfig.model_validate_json(resolved.config_json))

    def single(plan) -> str:
        return evaluate_variant(config_json=plan.config.model_dump_json(), label=plan.label, adapter_uri="",
                                adapter_version="", index=idx.index, qa_uri=idx.qa_uri,
                                documents_uri=idx.documents_uri, retrieval_report=idx.retrieval_report)

    single(plans[0])
    compare_s, singles_s, per_variant, questions = [], [], {p.name: [] for p in plans}, None
    for i in range(args.repeats):
        progress(f"repeat {i + 1}/{args.repeats}: compare_models")
        t0 = time.perf_counter()
        out = compare_models(config=FlyteFile(str(path)))
        compare_s.append(time.perf_counter() - t0)
        questions = load_comparison(out.comparison).questions
        progress(f"repeat {i + 1}/{args.repeats}: {len(plans)} single evaluations")
        total = 0.0
        for plan in plans:
            t0 = time.perf_counter()
            single(plan)
            elapsed = time.perf_counter() - t0
            per_variant[plan.name].append(elapsed)
            total += elapsed
        singles_s.append(total)
    ratios = [c / s for c, s in zip(compare_s, singles_s)]
    result = result_header("compare", machine(["flytekit", "transformers", "torch"]), args) | {
        "variants": [p.name for p in plans],
        "questions": questions,
        "compare_workflow_s": summarize(compare_s),
        "sum_of_single_evaluations_s": summarize(singles_s),
        "single_evaluation_s": {name: summarize(v) for name, v in per_variant.items()},
        "ratio_compare_over_singles": summarize(ratios),
        "target_ratio": 1.1,
    }
    print_table(["", "median s", "min", "max"], [
        ["compare_models (4 variants)", *(result["compare_workflow_s"][k] for k in ("median", "min", "max"))],
        ["sum of 4 single evaluations", *(result["sum_of_single_evaluations_s"][k] for k in ("median", "min", "max"))],
        ["ratio", *(result["ratio_compare_over_singles"][k] for k in ("median", "min", "max"))],
    ], title=f"{len(plans)} variants x {questions} questions")
    progress(f"wrote {write_result(args.name, result)}")


if __name__ == "__main__":
    main()
