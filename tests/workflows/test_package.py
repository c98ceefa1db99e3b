"""`pyflyte package` compiles every workflow into the specs registration would send (offline, no cluster)."""

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from flyteidl.admin.task_pb2 import TaskSpec

from tests.conftest import REPO_ROOT

CPU_IMAGE = "ghcr.io/example/flyte-llmops:cpu-test"
GPU_IMAGE = "ghcr.io/example/flyte-llmops:gpu-test"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict[str, TaskSpec]:
    out = tmp_path_factory.mktemp("pkg") / "flyte-package.tgz"
    pyflyte = Path(sys.executable).with_name("pyflyte")
    subprocess.run(
        [str(pyflyte), "--pkgs", "workflows", "package", "--image", CPU_IMAGE, "--image", f"gpu={GPU_IMAGE}",
         "-f", "--output", str(out)],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=300,
    )
    specs: dict = {"__workflows__": set()}
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if "_workflows." in member.name:  # e.g. 20_workflows.pipeline.llmops_pipeline_2.pb
                specs["__workflows__"].add(member.name.split("_", 1)[1].rsplit("_", 1)[0])
            if "_tasks." in member.name:
                spec = TaskSpec()
                spec.ParseFromString(tar.extractfile(member).read())
                specs[spec.template.id.name] = spec
    return specs


def _resources(spec: TaskSpec) -> dict[str, str]:
    return {r.name: r.value for r in spec.template.container.resources.requests}


def test_embed_task_requests_a_gpu_on_the_gpu_image(package):
    spec = package["tasks.embed.embed_shard"]
    from flyteidl.core.tasks_pb2 import Resources

    assert _resources(spec)[Resources.GPU] == "1"
    assert spec.template.extended_resources.gpu_accelerator.device == "nvidia-l4"
    assert spec.template.container.image == GPU_IMAGE
    assert spec.template.metadata.interruptible and spec.template.metadata.retries.retries >= 1
    assert spec.template.metadata.discoverable  # cached


def test_cpu_tasks_use_the_default_image_and_no_gpu(package):
    from flyteidl.core.tasks_pb2 import Resources

    for name in ("tasks.ingest.ingest", "tasks.chunk.chunk", "tasks.index.build_index"):
        assert package[name].template.container.image == CPU_IMAGE
        assert Resources.GPU not in _resources(package[name])


def test_cache_version_is_the_code_version(package):
    from llmops.code_version import code_version

    assert package["tasks.chunk.chunk"].template.metadata.discovery_version == code_version()
    assert not package["tasks.ingest.ingest"].template.metadata.discoverable  # ingest must always re-read


def test_finetune_task_requests_a_gpu_and_more_memory(package):
    from flyteidl.core.tasks_pb2 import Resources

    spec = package["tasks.finetune.finetune"]
    requests = _resources(spec)
    assert requests[Resources.GPU] == "1"
    assert requests[Resources.MEMORY] == "48Gi"  # more than the other GPU tasks: the base model passes through RAM
    assert {r.name: r.value for r in spec.template.container.resources.limits}[Resources.GPU] == "1"
    assert spec.template.extended_resources.gpu_accelerator.device == "nvidia-l4"
    assert spec.template.container.image == GPU_IMAGE
    assert spec.template.metadata.interruptible and spec.template.metadata.retries.retries >= 1
    assert spec.template.metadata.discoverable  # cached: reruns reuse the content-addressed adapter
    assert set(spec.template.interface.outputs.variables) == {"adapter", "version"}


def test_evaluation_runs_the_model_on_a_gpu_and_gates_and_promotion_are_never_cached(package):
    from flyteidl.core.tasks_pb2 import Resources

    spec = package["tasks.evaluate.evaluate_model"]
    assert _resources(spec)[Resources.GPU] == "1"
    assert spec.template.extended_resources.gpu_accelerator.device == "nvidia-l4"
    assert spec.template.container.image == GPU_IMAGE and spec.template.metadata.discoverable
    # Both read the production alias, which can move between runs: a cached answer would be stale.
    for name in ("tasks.evaluate.apply_gates", "tasks.promote.promote"):
        assert not package[name].template.metadata.discoverable
        assert package[name].template.container.image == CPU_IMAGE


def test_every_workflow_and_branch_task_is_packaged(package):
    workflows = package["__workflows__"]
    for name in ("index.index_corpus", "index.index_stage", "pipeline.llmops_pipeline", "pipeline.finetune_and_evaluate"):
        assert f"workflows.{name}" in workflows
    # Both sides of the pipeline's fine-tune branch compile with the tasks they call.
    for name in ("tasks.finetune.finetune", "tasks.evaluate.no_finetune", "tasks.config.finetune_enabled"):
        assert name in package
