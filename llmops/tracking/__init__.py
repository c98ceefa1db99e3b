"""Tracking: the pipeline's runs (evaluations, fine-tunes, comparisons) logged to MLflow, so they can be compared
side by side in the MLflow UI. mlflow is imported only when `tracking.mlflow_uri` is set.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run": ("TrackedRun", "flat_params", "metric_key"),
        "mlflow_log": ("log_run", "redact_uri"),
    },
)
