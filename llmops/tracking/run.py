"""`TrackedRun`: what one run logs (params, metrics, step series, artifacts, tags), independent of MLflow.

The tasks turn their records (an eval report, an adapter manifest, a comparison) into one of these; `mlflow_log`
sends it. Keys are made valid for MLflow here (`recall@5` -> `recall_at_5`), so one record type is mapped once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from llmops.config import RUN_NAME_FIELDS

__all__ = ["TrackedRun", "flat_params", "metric_key"]

# MLflow's limits (mlflow.utils.validation): longer param values are refused, so they are cut with a mark.
MAX_PARAM_CHARS = 6000
MAX_KEY_CHARS = 250


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run. `names` fill the run name template (`tracking.run_name`); `series` are step-indexed metrics
    (a loss curve); `artifacts` are local files and `texts` are files made from a string (a Deck's HTML), both by
    their name in the run's artifacts."""

    kind: str  # evaluate | finetune | compare | variant
    label: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    series: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    artifacts: Mapping[str, Path] = field(default_factory=dict)
    texts: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    names: Mapping[str, str | None] = field(default_factory=dict)  # model, index_version, adapter_version, execution

    def name(self, template: str) -> str:
        """The run's name from `template` (validated by TrackingConfig: only RUN_NAME_FIELDS)."""
        values = {f: "" for f in RUN_NAME_FIELDS} | {k: v or "" for k, v in self.names.items()}
        return template.format_map(values | {"kind": self.kind, "label": self.label})

    def clean_metrics(self) -> dict[str, float]:
        """Metrics MLflow can store: measured (not None), finite, under valid keys."""
        return {metric_key(k): float(v) for k, v in self.metrics.items() if _finite(v)}

    def clean_series(self) -> dict[str, list[tuple[int, float]]]:
        return {metric_key(k): [(int(s), float(v)) for s, v in points if _finite(v)] for k, points in self.series.items()}

    def clean_params(self) -> dict[str, str]:
        return {metric_key(k): _cut(str(v)) for k, v in self.params.items()}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cut(value: str) -> str:
    mark = "...(cut)"
    return value if len(value) <= MAX_PARAM_CHARS else value[: MAX_PARAM_CHARS - len(mark)] + mark


def metric_key(name: str) -> str:
    """`name` as a valid MLflow param/metric/tag key: alphanumerics, `_ - . /` and spaces (`@` reads `_at_`)."""
    key = re.sub(r"[^\w.\- /]", "_", name.replace("@", "_at_"))
    key = "/".join(part if part not in ("", ".", "..") else "_" for part in key.split("/"))
    return key[:MAX_KEY_CHARS]


def flat_params(record: Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """A nested JSON record as flat `a.b.c: value` params; lists and empty mappings stay one JSON value."""
    out: dict[str, str] = {}
    for key, value in (record or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, str):
            out[name] = value
        else:
            out[name] = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return out
