"""Send a `TrackedRun`, and the runs nested under it, to MLflow.

mlflow is imported here only, inside `log_run`, and only when `tracking.mlflow_uri` is set: without it, no module
of the pipeline imports mlflow. `MlflowClient` is used rather than the fluent API (`mlflow.start_run`), which keeps
an active run per process; the client holds no state between calls, so concurrent tasks cannot log into each
other's runs.

A tracking server that cannot be reached must not fail a pipeline that already did its work: the failure is logged
as a warning naming the server without its credentials, and the task goes on (`tracking.required: true` makes it an
error instead). Requests use `tracking.request_timeout_s` and `tracking.max_retries` instead of MLflow's defaults,
whose seven retries with backoff wait minutes for a server that is down.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llmops.config import TrackingConfig
from llmops.errors import TrackingError
from llmops.tracking.run import TrackedRun, metric_key

__all__ = ["log_run", "redact_uri"]

log = logging.getLogger(__name__)

# MLflow's per-request batch limits (mlflow.utils.validation: MAX_PARAMS_TAGS_PER_BATCH, MAX_METRICS_PER_BATCH).
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
MAX_TAG_CHARS = 8000
# Seconds urllib3 waits before the n-th retry: factor * 2**(n-1), from the second retry on (MLflow's default is 2).
BACKOFF_FACTOR = "1"
INSTALL_HINT = "install the tracking extra: pip install 'flyte-llmops[tracking]'"


def log_run(cfg: TrackingConfig, run: TrackedRun, children: Sequence[TrackedRun] = ()) -> str | None:
    """Log `run` to `cfg.mlflow_uri`, each of `children` as a run nested under it (the variants of a comparison).

    Returns the run's id; None when tracking is off, or when logging failed and `cfg.required` is false (a warning
    says why). Raises TrackingError when it failed and `cfg.required` is true."""
    if cfg.mlflow_uri is None:
        return None
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        return _failed(cfg, run, f"mlflow is not installed ({e})", fix=INSTALL_HINT)
    try:
        with _request_limits(cfg):
            client = MlflowClient(tracking_uri=cfg.mlflow_uri)
            experiment_id = _experiment_id(client, cfg.experiment)
            run_id = _log_one(client, experiment_id, cfg, run, parent_id=None)
            for child in children:
                _log_one(client, experiment_id, cfg, child, parent_id=run_id)
    except Exception as e:  # any failure of the server, the network or the artifact store
        return _failed(cfg, run, f"{type(e).__name__}: {e}",
                       fix="check that the server is up (README, 'Tracking with MLflow')")
    log.info("logged %s run %r to MLflow at %s (run id %s)", run.kind, run.name(cfg.run_name),
             redact_uri(cfg.mlflow_uri), run_id)
    return run_id


def _failed(cfg: TrackingConfig, run: TrackedRun, error: str, fix: str) -> None:
    uri = cfg.mlflow_uri or ""
    detail = _without_secrets(error, uri)
    if len(detail) > 500:
        detail = detail[:500] + "..."
    message = (
        f"the {run.kind} run {run.name(cfg.run_name)!r} was not logged to MLflow at {redact_uri(uri)}: {detail}; "
        f"{fix}"
    )
    if cfg.required:
        raise TrackingError(f"{message}, or set tracking.required: false to go on without it")
    log.warning("%s. The run goes on without tracking (tracking.required: true makes this an error)", message)
    return None


def redact_uri(uri: str) -> str:
    """`uri` without credentials: no user or password, no query string or fragment (tokens travel there too)."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _without_secrets(text: str, uri: str) -> str:
    parts = urlsplit(uri)
    text = text.replace(uri, redact_uri(uri))
    for secret in (parts.password, parts.query, parts.fragment, parts.netloc.rpartition("@")[0]):
        if secret:
            text = text.replace(secret, "***")
    return text


@contextmanager
def _request_limits(cfg: TrackingConfig) -> Iterator[None]:
    """MLflow reads its HTTP timeout and retries from the environment on each request: set ours while logging."""
    limits = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(max(1, round(cfg.request_timeout_s)))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(cfg.max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": BACKOFF_FACTOR,
    }
    before = {name: os.environ.get(name) for name in limits}
    os.environ.update(limits)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:  # created by a concurrent task in between
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} is deleted: restore it (`mlflow experiments restore`) or set another "
            "tracking.experiment"
        )
    return experiment.experiment_id


def _log_one(client: Any, experiment_id: str, cfg: TrackingConfig, run: TrackedRun, parent_id: str | None) -> str:
    from mlflow.entities import Metric, Param

    tags = {**cfg.tags, **run.tags, "llmops.kind": run.kind, "llmops.label": run.label}
    if parent_id is not None:
        tags["mlflow.parentRunId"] = parent_id
    created = client.create_run(
        experiment_id,
        run_name=run.name(cfg.run_name),
        tags={k if k.startswith("mlflow.") else metric_key(k): str(v)[:MAX_TAG_CHARS] for k, v in tags.items()},
    )
    run_id = created.info.run_id
    try:
        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in run.clean_params().items()]
        metrics = [Metric(k, v, now, 0) for k, v in run.clean_metrics().items()]
        metrics += [Metric(k, v, now, step) for k, points in run.clean_series().items() for step, v in points]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i : i + PARAMS_PER_BATCH])
        for i in range(0, len(metrics), METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_BATCH])
        for name, path in run.artifacts.items():
            _log_file(client, run_id, name, Path(path))
        for name, text in run.texts.items():
            client.log_text(run_id, text, name)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        with suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _log_file(client: Any, run_id: str, name: str, path: Path) -> None:
    """`path` as the run's artifact `name` (a folder inside the run's artifacts may lead it: `variant/report.json`)."""
    folder, _, filename = name.rpartition("/")
    if path.name == filename:
        client.log_artifact(run_id, str(path), folder or None)
        return
    with tempfile.TemporaryDirectory(prefix="llmops-tracking-") as scratch:
        renamed = Path(scratch, filename)
        shutil.copyfile(path, renamed)
        client.log_artifact(run_id, str(renamed), folder or None)
