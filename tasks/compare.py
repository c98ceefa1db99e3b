"""Comparison tasks: evaluate one variant with the eval stage (a map task item), then collect every variant's
report into the comparison and its Deck."""

from __future__ import annotations

import functools
import typing

from flytekit import Secret, dynamic, map_task, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from eval.comparison.report import ComparedRun, build_comparison
from eval.comparison.store import load_run, store_comparison
from eval.comparison.variants import plan_variants, variant_endpoint, variant_price
from llmops.config import PipelineConfig
from llmops.errors import ConfigError
from llmops.index.artifact import materialize, utc_now
from tasks.common import (
    CPU_RESOURCES,
    EVAL_SECRETS,
    SECRET_GROUP,
    TIMEOUTS,
    cache_settings,
    decode_config,
    gpu_task_settings,
)
from tasks.decks import publish
from tasks.decks.compare import comparison_deck
from tasks.evaluate import run_evaluation
from tasks.tracking import log_comparison

__all__ = ["PROVIDER_SECRETS", "compare_report", "compare_variants", "evaluate_variant"]

# A provider's key reaches the evaluation as the environment variable its `api_key_env` names. On a cluster that is
# a Flyte secret: the ones below (and llm-api-key, judge-api-key). A provider whose key lives elsewhere needs its
# Secret added here; resolve_compare_config refuses a config that names a variable no secret fills.
PROVIDER_SECRETS = [
    Secret(group=SECRET_GROUP, key="provider-api-key", mount_requirement=Secret.MountType.ENV_VAR,
           env_var="LLMOPS_PROVIDER_API_KEY"),
]
SECRET_ENV_VARS = frozenset(s.env_var for s in [*EVAL_SECRETS, *PROVIDER_SECRETS])

# The eval task's settings without its cache: a comparison measures latency, and a provider's model may change
# behind the same name, so each comparison evaluates afresh.
_UNCACHED = {k: v for k, v in gpu_task_settings(secrets=[*EVAL_SECRETS, *PROVIDER_SECRETS]).items()
             if k not in cache_settings()}


# No Deck: map task items publish none (flyteorg/flyte#4201); compare_report shows every variant.
@task(**_UNCACHED)
def evaluate_variant(
    config_json: str,
    label: str,
    adapter_uri: str,
    adapter_version: str,
    index: FlyteDirectory,
    qa_uri: typing.Optional[str],
    documents_uri: str,
    retrieval_report: FlyteFile,
) -> str:
    """One variant through the eval stage (`config_json` is the variant's config); returns its report URI."""
    _, report_uri, _ = run_evaluation(
        decode_config(config_json, "evaluate"),
        index,
        qa_uri,
        documents_uri,
        retrieval_report,
        label,
        adapter_dir=materialize(adapter_uri) if adapter_uri else None,
        adapter_version=adapter_version or None,
        adapter_uri=adapter_uri or None,
    )
    return report_uri


def _unfilled_keys(cfg: PipelineConfig) -> list[str]:
    from llmops.config import ProviderModel

    return sorted({
        f"compare.variants ({v.name}): api_key_env {v.model.api_key_env} is filled by no Flyte secret of the "
        "evaluation task; use LLMOPS_PROVIDER_API_KEY (secret provider-api-key) or add a Secret to "
        "tasks/compare.py PROVIDER_SECRETS"
        for v in cfg.compare.expand()
        if isinstance(v.model, ProviderModel) and v.model.api_key_env not in SECRET_ENV_VARS
    })


@dynamic(requests=CPU_RESOURCES, timeout=TIMEOUTS["evaluate"])
def compare_variants(
    config_json: str,
    index: FlyteDirectory,
    qa_uri: typing.Optional[str],
    documents_uri: str,
    retrieval_report: FlyteFile,
) -> str:
    """Every variant of the config's grid through the eval stage as one map task (its concurrency is the config's
    `compare.max_concurrency`, known only now: hence a dynamic workflow), then the comparison. Returns its URI."""
    from tasks.common import run_id

    cfg = decode_config(config_json)
    plans = plan_variants(cfg)
    if run_id() is not None and (problems := _unfilled_keys(cfg)):
        raise ConfigError("compare", problems)
    evaluate = map_task(
        functools.partial(evaluate_variant, index=index, qa_uri=qa_uri, documents_uri=documents_uri,
                          retrieval_report=retrieval_report),
        concurrency=cfg.compare.max_concurrency,
    )
    report_uris = evaluate(
        config_json=[p.config.model_dump_json() for p in plans],
        label=[p.label for p in plans],
        adapter_uri=[p.adapter_uri or "" for p in plans],
        adapter_version=[p.adapter_version or "" for p in plans],
    )
    return compare_report(config_json=config_json, report_uris=report_uris)


@task(requests=CPU_RESOURCES, timeout=TIMEOUTS["cpu"], enable_deck=True, deck_fields=())
def compare_report(config_json: str, report_uris: list[str]) -> str:
    """The variants' reports and per-question samples as one comparison, stored and shown; returns its URI."""
    cfg = decode_config(config_json)
    variants = cfg.compare.expand()
    runs: list[ComparedRun] = [
        load_run(uri, v.name, prompt=v.prompt_name, model=v.model_name, sampling=v.sampling_name,
                 endpoint=variant_endpoint(v), price=variant_price(v))
        for v, uri in zip(variants, report_uris, strict=True)
    ]
    report = build_comparison(runs, disagreement_rouge_l=cfg.compare.disagreement_rouge_l, created_at=utc_now())
    uri = store_comparison(cfg, report)
    deck = comparison_deck(report)
    publish("Comparison", deck)
    log_comparison(cfg, report, deck)  # a parent MLflow run with one nested run per variant, when tracking is on
    return uri
