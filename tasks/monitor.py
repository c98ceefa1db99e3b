"""Monitor task: a window of the request log against the reference release; files for gates and alerts, a Deck."""

from __future__ import annotations

import datetime as dt
import logging
import typing

from flytekit import task

from eval.monitor import run_monitor
from llmops.monitor.report import push_gauges, write_monitor_files
from tasks.common import HF_TOKEN, JUDGE_API_KEY, cpu_task_settings, decode_config
from tasks.decks import monitor_deck, publish

__all__ = ["MonitorOutputs", "monitor"]

log = logging.getLogger(__name__)

MonitorOutputs = typing.NamedTuple(
    "MonitorOutputs", [("metrics_uri", str), ("report_uri", str), ("drift_exceeded", bool)]
)


# Never cached: the log grows, and a rerun of the same window must see what arrived since.
# HF_TOKEN: the reference index's embedder (gap clustering); the judge's key for the RAGAS sample.
@task(**{**cpu_task_settings(cached=False), "secret_requests": [HF_TOKEN, JUDGE_API_KEY]})
def monitor(
    config_json: str, window_end: typing.Optional[dt.datetime] = None, whole_days: bool = False
) -> MonitorOutputs:
    """`monitoring.monitor.window_days` of the request log ending at `window_end` (a scheduled run's kickoff time;
    default now), or with `whole_days` at the UTC midnight before it. Writes `<artifacts.root>/monitor/<window end>/metrics.json` (+ metrics.prom, report.json), moves
    `monitor/latest.json`, and pushes the gauges when `monitoring.monitor.pushgateway_url` is set."""
    cfg = decode_config(config_json)
    end = None if window_end is None else _utc(window_end).timestamp()
    report = run_monitor(cfg, window_end=end, whole_days=whole_days)
    files = write_monitor_files(report, cfg.artifacts.root)
    publish("Monitor", monitor_deck(report, files))  # first: a Pushgateway that is down fails the run, not the Deck
    url = cfg.monitoring.monitor.pushgateway_url
    if url:
        push_gauges(report, url, cfg.monitoring.monitor.pushgateway_job)
        log.info("pushed the monitor's gauges to the Pushgateway (job %s)", cfg.monitoring.monitor.pushgateway_job)
    return MonitorOutputs(files.metrics, files.report, bool(report.drift.exceeded))


def _utc(t: dt.datetime) -> dt.datetime:
    """Flyte passes datetimes as UTC; a naive one (a local `pyflyte run --window_end ...`) is read as UTC too."""
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t
