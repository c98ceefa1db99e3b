"""`pyflyte package` compiles every workflow and launch plan into the specs registration would send (offline, no
cluster). With LLMOPS_FLYTE_PACKAGE set, checks that package instead of building one (CI checks the package it
built with the image names below)."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from flyteidl.admin.launch_plan_pb2 import LaunchPlan
from flyteidl.admin.task_pb2 import TaskSpec
from flyteidl.core.tasks_pb2 import Resources
from google.protobuf.json_format import MessageToDict

from tests.conftest import REPO_ROOT

CPU_IMAGE = "ghcr.io/example/flyte-llmops:cpu-test"
GPU_IMAGE = "ghcr.io/example/flyte-llmops:gpu-test"
GPU_TASKS = ("tasks.embed.embed_shard", "tasks.finetune.finetune", "tasks.evaluate.evaluate_model")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
RESOURCE_NAMES = {"cpu": Resources.CPU, "memory": Resources.MEMORY, "gpu": Resources.GPU}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    given = os.environ.get("LLMOPS_FLYTE_PACKAGE")
    if given:
        out = Path(given).resolve()
    else:
        out = tmp_path_factory.mktemp("pkg") / "flyte-package.tgz"
        pyflyte = Path(sys.executable).with_name("pyflyte")
        subprocess.run(
            [str(pyflyte), "--pkgs", "workflows", "package", "--image", CPU_IMAGE, "--image", f"gpu={GPU_IMAGE}",
             "-f", "--output", str(out)],
            cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=300,
        )
    specs: dict = {"__workflows__": set(), "__launch_plans__": {}}
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""
            if "_workflows." in member.name:  # e.g. 20_workflows.pipeline.llmops_pipeline_2.pb
                specs["__workflows__"].add(member.name.split("_", 1)[1].rsplit("_", 1)[0])
            elif "_tasks." in member.name:
                spec = TaskSpec()
                spec.ParseFromString(data)
                specs[spec.template.id.name] = spec
            elif member.name.endswith("_3.pb"):  # launch plans (resource type 3) not named after a workflow
                plan = LaunchPlan()
                plan.ParseFromString(data)
                specs["__launch_plans__"][plan.id.name] = plan
    return specs


def _primary(spec: TaskSpec) -> dict:
    """Image and resources of the task's main container: the plain container, or the pod template's primary one."""
    t = spec.template
    if t.HasField("container"):
        return {
            "image": t.container.image,
            "requests": {r.name: r.value for r in t.container.resources.requests},
            "limits": {r.name: r.value for r in t.container.resources.limits},
        }
    pod = MessageToDict(t.k8s_pod.pod_spec)
    (primary,) = [c for c in pod["containers"] if c["name"] == t.config["primary_container_name"]]
    res = primary.get("resources", {})
    return {
        "image": primary["image"],
        "requests": {RESOURCE_NAMES[k]: v for k, v in res.get("requests", {}).items()},
        "limits": {RESOURCE_NAMES[k]: v for k, v in res.get("limits", {}).items()},
    }


def _resources(spec: TaskSpec) -> dict[str, str]:
    return _primary(spec)["requests"]


def _tolerations(spec: TaskSpec) -> list[dict]:
    if not spec.template.HasField("k8s_pod"):
        return []
    return MessageToDict(spec.template.k8s_pod.pod_spec).get("tolerations", [])


def test_embed_task_requests_a_gpu_on_the_gpu_image(package):
    spec = package["tasks.embed.embed_shard"]
    assert _resources(spec)[Resources.GPU] == "1"
    assert spec.template.extended_resources.gpu_accelerator.device == "nvidia-l4"
    assert _primary(spec)["image"] == GPU_IMAGE
    assert spec.template.metadata.interruptible and spec.template.metadata.retries.retries >= 1
    assert spec.template.metadata.discoverable  # cached


def test_cpu_tasks_use_the_default_image_and_no_gpu(package):
    for name in ("tasks.ingest.ingest", "tasks.chunk.chunk", "tasks.index.build_index"):
        assert _primary(package[name])["image"] == CPU_IMAGE
        assert Resources.GPU not in _resources(package[name])


CACHED_TASKS = (
    "tasks.chunk.chunk",
    "tasks.embed.plan_shards",
    "tasks.embed.embed_shard",
    "tasks.index.build_index",
    "tasks.retrieval_eval.evaluate_retrieval",
    "tasks.finetune.finetune",
    "tasks.evaluate.evaluate_model",
)


def test_cached_tasks_are_keyed_by_their_stage_key_not_the_whole_config(package):
    from llmops.provenance.stage_inputs import KEY_SCHEMA

    for name in CACHED_TASKS:
        meta = package[name].template.metadata
        assert meta.discoverable and meta.discovery_version == KEY_SCHEMA, name
        assert list(meta.cache_ignore_input_vars) == ["config_json"], name
        assert "stage_key" in package[name].template.interface.inputs.variables, name
    # Never cached: ingest fingerprints the corpus, resolve_config computes the keys.
    for name in ("tasks.ingest.ingest", "tasks.config.resolve_config"):
        assert not package[name].template.metadata.discoverable, name


def test_every_task_has_a_timeout_and_gpu_tasks_retry_once(package):
    for name, spec in package.items():
        if name.startswith("__"):
            continue
        assert spec.template.metadata.timeout.seconds > 0, f"{name} has no timeout"
    for name in GPU_TASKS:
        # Preemptions are system retries; user retries only repeat a task's own failure (often deterministic).
        assert package[name].template.metadata.retries.retries == 1, name


def test_credentials_are_requested_as_flyte_secrets(package):
    def secrets(name):
        return {(s.group, s.key, s.env_var) for s in package[name].template.security_context.secrets}

    hf = ("llmops", "hf-token", "HF_TOKEN")
    assert secrets("tasks.evaluate.evaluate_model") == {
        hf, ("llmops", "llm-api-key", "LLMOPS_LLM_API_KEY"), ("llmops", "judge-api-key", "LLMOPS_JUDGE_API_KEY")
    }
    for name in ("tasks.finetune.finetune", "tasks.embed.embed_shard", "tasks.chunk.chunk",
                 "tasks.config.resolve_config"):
        assert hf in secrets(name), name
    assert not secrets("tasks.promote.promote")


def test_packaging_without_the_gpu_image_names_the_flag(tmp_path):
    pyflyte = Path(sys.executable).with_name("pyflyte")
    result = subprocess.run(
        [str(pyflyte), "--pkgs", "workflows", "package", "--image", CPU_IMAGE, "-f", "--output",
         str(tmp_path / "p.tgz")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "--image gpu=" in " ".join((result.stdout + result.stderr).split())


def test_finetune_task_requests_a_gpu_and_more_memory(package):
    spec = package["tasks.finetune.finetune"]
    requests = _resources(spec)
    assert requests[Resources.GPU] == "1"
    assert requests[Resources.MEMORY] == "48Gi"  # more than the other GPU tasks: the base model passes through RAM
    assert _primary(spec)["limits"][Resources.GPU] == "1"
    assert spec.template.extended_resources.gpu_accelerator.device == "nvidia-l4"
    assert _primary(spec)["image"] == GPU_IMAGE
    assert spec.template.metadata.interruptible and spec.template.metadata.retries.retries >= 1
    assert spec.template.metadata.discoverable  # cached: reruns reuse the content-addressed adapter
    assert set(spec.template.interface.outputs.variables) == {"adapter", "version"}


def test_evaluation_runs_the_model_on_a_gpu_and_gates_and_promotion_are_never_cached(package):
    spec = package["tasks.evaluate.evaluate_model"]
    assert _resources(spec)[Resources.GPU] == "1"
    assert spec.template.extended_resources.gpu_accelerator.device == "nvidia-l4"
    assert _primary(spec)["image"] == GPU_IMAGE and spec.template.metadata.discoverable
    # Both read the production alias, which can move between runs: a cached answer would be stale.
    for name in ("tasks.evaluate.apply_gates", "tasks.promote.promote"):
        assert not package[name].template.metadata.discoverable
        assert _primary(package[name])["image"] == CPU_IMAGE


def test_every_workflow_and_branch_task_is_packaged(package):
    workflows = package["__workflows__"]
    for name in ("index.index_corpus", "index.index_stage", "pipeline.llmops_pipeline", "pipeline.finetune_and_evaluate"):
        assert f"workflows.{name}" in workflows
    # Both sides of the pipeline's fine-tune branch compile with the tasks they call.
    for name in ("tasks.finetune.finetune", "tasks.evaluate.no_finetune", "tasks.config.finetune_enabled"):
        assert name in package


def test_gpu_tasks_tolerate_the_gpu_taint_and_cpu_tasks_have_no_pod_template(package):
    for name in GPU_TASKS:
        assert GPU_TOLERATION in _tolerations(package[name]), name
        assert package[name].template.metadata.interruptible, name  # spot nodes: outputs are content-addressed
    for name, spec in package.items():
        if name.startswith("__") or name in GPU_TASKS:
            continue
        assert not spec.template.HasField("k8s_pod"), name
        assert Resources.GPU not in _resources(spec), name
    # They move the production alias: never on a node that can vanish mid-way.
    for name in ("tasks.evaluate.apply_gates", "tasks.promote.promote"):
        assert not package[name].template.metadata.interruptible


def test_launch_plans_carry_the_cluster_config_and_the_nightly_schedule(package):
    from workflows.launch_plans import CLUSTER_CONFIG, IMAGE_ROOT, REINDEX_SCHEDULE

    plans = package["__launch_plans__"]
    pipeline, nightly = plans["llmops_pipeline_gpu"], plans["index_corpus_nightly"]
    assert pipeline.spec.workflow_id.name == "workflows.pipeline.llmops_pipeline"
    assert nightly.spec.workflow_id.name == "workflows.index.index_corpus"
    assert not pipeline.spec.entity_metadata.HasField("schedule")
    assert nightly.spec.entity_metadata.schedule.cron_schedule.schedule == REINDEX_SCHEDULE == "0 3 * * *"
    for plan in (pipeline, nightly):
        # Every input has a default (a schedule can only start a plan that needs no input): the config file inside
        # the task image, never a temporary file of the machine that packaged it.
        params = plan.spec.default_inputs.parameters
        assert set(params) == {"config"}
        assert params["config"].default.scalar.blob.uri == str(CLUSTER_CONFIG) == f"{IMAGE_ROOT}/configs/gpu.yaml"


def test_the_monitor_runs_daily_on_whole_days_and_is_never_cached(package):
    from workflows.launch_plans import CLUSTER_CONFIG, MONITOR_SCHEDULE

    assert "workflows.monitor.monitor" in package["__workflows__"]
    task = package["tasks.monitor.monitor"]
    assert not task.template.metadata.discoverable  # the log grows: a rerun must read it again
    assert _primary(task)["image"] == CPU_IMAGE and Resources.GPU not in _resources(task)
    secrets = {s.key for s in task.template.security_context.secrets}
    assert secrets == {"hf-token", "judge-api-key"}
    plan = package["__launch_plans__"]["monitor_daily"]
    assert plan.spec.workflow_id.name == "workflows.monitor.monitor"
    schedule = plan.spec.entity_metadata.schedule
    assert schedule.cron_schedule.schedule == MONITOR_SCHEDULE == "15 0 * * *"
    assert schedule.kickoff_time_input_arg == "window_end"  # the window ends at the scheduled time ...
    params = plan.spec.default_inputs.parameters
    assert params["whole_days"].default.scalar.primitive.boolean is True  # ... floored to the UTC midnight
    assert params["config"].default.scalar.blob.uri == str(CLUSTER_CONFIG)


def test_the_image_holds_the_cluster_config_where_the_launch_plans_look():
    from workflows.launch_plans import IMAGE_ROOT

    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert dockerfile.split("WORKDIR ")[-1].split()[0] == str(IMAGE_ROOT)
    assert "COPY --chown=app:app . ." in dockerfile
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert not {"configs", "configs/", "configs/gpu.yaml", "*.yaml"} & set(ignored)
    assert (REPO_ROOT / "configs" / "gpu.yaml").is_file()
