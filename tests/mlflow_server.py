"""A real MLflow tracking server for the tracking tests: `mlflow server` on a free loopback port, SQLite backend,
artifacts served by the server (`--serve-artifacts`), in a temporary folder; one per test session.

The server comes from the `dev` extra: mlflow-skinny's server code and the dependencies full mlflow adds for it
(flask, alembic, sqlalchemy, graphene, huey), so `pip install -e '.[cpu,dev]'` is all CI needs. Tests skip, saying
why, when they are missing.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from functools import cache
from pathlib import Path

import pytest

# Startup imports the server app and migrates the SQLite schema: about 30 s on a busy 2-core machine.
STARTUP_TIMEOUT_S = 240
SERVER_MODULES = ("mlflow", "flask", "alembic", "sqlalchemy", "graphene", "huey")


def missing_server_modules() -> list[str]:
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, folder: Path) -> None:
    """Stop the server's process group (the server, its uvicorn worker): what outlives SIGTERM gets SIGKILL."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


@cache
def mlflow_server_uri() -> str:
    """Start the session's server (once) and return its tracking URI; skip when it cannot run here."""
    if missing := missing_server_modules():
        pytest.skip(f"the MLflow server needs {', '.join(missing)}: pip install -e '.[cpu,dev]' installs them")
    folder = Path(tempfile.mkdtemp(prefix="llmops-mlflow-"))
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_cli) if mlflow_cli.exists() else "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (folder / "server.log").open("wb")
    # No job executor: its huey consumer processes serve MLflow's GenAI jobs, which these tests do not use.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder, env=env)
    atexit.register(_stop, proc, folder)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{(folder / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return uri
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"mlflow server not up after {STARTUP_TIMEOUT_S} s:\n{(folder / 'server.log').read_text()[-3000:]}")


def closed_port_uri() -> str:
    """A loopback URI where nothing listens (a tracking server that is down)."""
    return f"http://127.0.0.1:{_free_port()}"


def mlflow_client(uri: str):
    """MLflow's own client, to read back what the pipeline logged."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, experiment: str) -> list:
    """Every run of `experiment` (none when the experiment was never created)."""
    found = mlflow_client(uri).get_experiment_by_name(experiment)
    return [] if found is None else mlflow_client(uri).search_runs([found.experiment_id])
