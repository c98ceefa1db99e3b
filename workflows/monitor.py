"""monitor: a window of the request log -> trends, retrieval drift, coverage gaps, a RAGAS sample; metrics for gates
and alerts (`<artifacts.root>/monitor/<window end>/metrics.json`, `metrics.prom`, `monitor/latest.json`).

Run locally:
    pyflyte run workflows/monitor.py monitor --config configs/quickstart.yaml [--window_end 2026-03-02T00:00:00] [--whole_days]
Daily on a cluster: the `monitor_daily` launch plan (workflows/launch_plans.py).
"""

from __future__ import annotations

import datetime as dt
import typing

from flytekit import workflow
from flytekit.types.file import FlyteFile

from tasks.config import resolve_config
from tasks.monitor import MonitorOutputs
from tasks.monitor import monitor as monitor_window


@workflow
def monitor(
    config: FlyteFile, window_end: typing.Optional[dt.datetime] = None, whole_days: bool = False
) -> MonitorOutputs:
    """`window_end`: default now; `whole_days`: end at the UTC midnight before it (the daily launch plan does)."""
    resolved = resolve_config(config=config)
    return monitor_window(config_json=resolved.config_json, window_end=window_end, whole_days=whole_days)
