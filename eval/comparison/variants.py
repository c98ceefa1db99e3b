"""A comparison variant as the config the eval stage runs: the config with its llm, prompt and sampling sections
replaced by the variant's, plus the adapter of a registry release. The same config, minus the comparison, is what
`llmops compare export-config` writes for `llmops_pipeline`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from llmops.config import (
    CompareVariant,
    LLMConfig,
    ModelPrice,
    PipelineConfig,
    ProviderModel,
    ReleaseModel,
    parse_config,
)
from llmops.errors import ConfigError

__all__ = [
    "VariantPlan", "candidate_config", "plan_variant", "plan_variants", "variant_endpoint", "variant_label",
    "variant_price",
]


@dataclass(frozen=True)
class VariantPlan:
    variant: CompareVariant
    config: PipelineConfig  # the config the eval stage runs for this variant
    adapter_uri: str | None  # a registry release's adapter (kind: release with an alias)
    adapter_version: str | None
    endpoint: str  # "self-hosted", or the provider's scheme://host (never a path or query: they may hold keys)
    price: ModelPrice | None

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def label(self) -> str:
        return variant_label(self.variant.name)


def variant_label(name: str) -> str:
    """The eval report's label for a variant: its name with '/' (not allowed in names) as '+', so it is one path
    segment under evals/."""
    return name.replace("/", "+")


def variant_endpoint(variant: CompareVariant) -> str:
    """Where the variant's model is reached: "self-hosted", or a provider's scheme://host[:port] (never its path or
    query, which may carry keys)."""
    if not isinstance(variant.model, ProviderModel):
        return "self-hosted"
    url = urlsplit(variant.model.base_url)
    return f"{url.scheme}://{url.hostname}" + (f":{url.port}" if url.port else "")


def variant_price(variant: CompareVariant) -> ModelPrice | None:
    return variant.model.price if variant.model is not None else None


def _release_llm(cfg: PipelineConfig, model: ReleaseModel, where: str) -> tuple[LLMConfig, str | None, str | None]:
    llm = model.llm or cfg.llm
    if llm is None:  # PipelineConfig's validator already refuses this; kept for configs built in code
        raise ConfigError(where, ["this model uses the config's llm section, and there is none: add one"])
    if model.alias is None:
        return llm, None, None
    from llmops.release.registry import ReleaseRegistry

    release = ReleaseRegistry(cfg.artifacts.registry_root).resolve(model.alias)
    if release is None:
        raise ConfigError(where, [
            f"alias {model.alias!r} points at no release in the registry: promote one first (llmops registry list "
            "shows the aliases), or leave `alias` out to evaluate the config's llm section"
        ])
    return llm.model_copy(update={"model": release.base_model}), release.adapter_uri, release.adapter_version


def plan_variant(cfg: PipelineConfig, variant: CompareVariant) -> VariantPlan:
    where = f"compare.variants ({variant.name})"
    model = variant.model
    adapter_uri = adapter_version = None
    if model is None:
        llm = cfg.llm
    elif isinstance(model, ReleaseModel):
        llm, adapter_uri, adapter_version = _release_llm(cfg, model, where)
    else:
        llm = model.llm_config()
    sampling = variant.sampling.apply(cfg.sampling) if variant.sampling is not None else cfg.sampling
    config = cfg.model_copy(update={
        "llm": llm, "prompt": variant.prompt or cfg.prompt, "sampling": sampling, "compare": None,
    })
    return VariantPlan(variant, config, adapter_uri, adapter_version, variant_endpoint(variant), variant_price(variant))


def plan_variants(cfg: PipelineConfig) -> list[VariantPlan]:
    if cfg.compare is None:
        raise ConfigError("compare", ["no compare section: add one with `variants` (configs/compare-quickstart.yaml)"])
    return [plan_variant(cfg, v) for v in cfg.compare.expand()]


def candidate_config(cfg: PipelineConfig, variant_name: str) -> PipelineConfig:
    """A config for `llmops_pipeline` whose candidate is the variant's model, prompt and sampling, validated.

    A provider's model cannot be fine-tuned here, so fine-tuning is off for one; a registry release contributes its
    base model (the pipeline trains its own adapter, as for any candidate)."""
    if cfg.compare is None:
        raise ConfigError("compare", ["no compare section: the config names no variants"])
    plan = plan_variant(cfg, cfg.compare.variant(variant_name))
    data = plan.config.model_dump(mode="json", exclude={"compare"})
    if isinstance(plan.variant.model, ProviderModel):
        data["finetune"]["enabled"] = False
    return parse_config(data, source=f"variant {variant_name}")
