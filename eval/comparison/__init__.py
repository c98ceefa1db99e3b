"""Comparing variants (prompt templates x models x sampling settings) evaluated by the one eval stage: the
comparison record, its storage, and a variant turned into a pipeline config.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "report": ("ComparedRun", "ComparisonReport", "MetricColumn", "QuestionComparison", "VariantResult",
                   "build_comparison"),
        "store": ("comparison_uri", "load_comparison", "load_run", "store_comparison"),
        "variants": ("VariantPlan", "candidate_config", "plan_variant", "plan_variants", "variant_label"),
    },
)
