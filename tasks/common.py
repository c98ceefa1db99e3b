"""What every Flyte task shares: images, resources, cache version and config decoding.

Tasks are thin wrappers: they decode inputs, call one plain function from `llmops`, publish a Deck and return URIs.
Intermediate outputs are URIs into the artifact store named by content digests, so Flyte cache keys carry content
digests and cached results never point at Flyte's local scratch folders (see docs/caching.md).
"""

from __future__ import annotations

from flytekit import PodTemplate, Resources
from flytekit.extras.accelerators import L4
from kubernetes.client import V1PodSpec, V1Toleration

from llmops.code_version import code_version
from llmops.config import PipelineConfig

__all__ = [
    "CACHE_VERSION",
    "CPU_RESOURCES",
    "GPU_ACCELERATOR",
    "GPU_IMAGE",
    "GPU_POD_TEMPLATE",
    "GPU_RESOURCES",
    "GPU_RETRIES",
    "decode_config",
    "execution_id",
    "gpu_task_settings",
    "run_id",
]

# Registered with `pyflyte register --image default=<cpu image> --image gpu=<gpu image>`; see README.
GPU_IMAGE = "{{.image.gpu.fqn}}:{{.image.gpu.version}}"

CPU_RESOURCES = Resources(cpu="2", mem="8Gi")
GPU_RESOURCES = Resources(cpu="4", mem="24Gi", gpu="1")
GPU_ACCELERATOR = L4  # 24 GB: fits any sentence-transformers model and a 7-8B LLM for LoRA in bf16

# GPU node pools are usually tainted `nvidia.com/gpu:NoSchedule` (GKE and EKS GPU pools, the NVIDIA GPU operator's
# guidance) so that CPU pods stay off them: GPU tasks tolerate that taint. Spot-node taints differ per cloud; Flyte
# adds them to interruptible tasks from the platform's `interruptible-tolerations` setting, not here.
GPU_POD_TEMPLATE = PodTemplate(
    pod_spec=V1PodSpec(
        containers=[],
        tolerations=[V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
    ),
)

# Changes whenever the pipeline's source changes, so Flyte never serves results of older code.
CACHE_VERSION = code_version()

# GPU tasks run on spot nodes (`interruptible=True`): retried when preempted (their outputs are content-addressed,
# so a retry is safe). Tasks with side effects that are not idempotent (apply_gates, promote) are not interruptible.
GPU_RETRIES = 3


def gpu_task_settings(resources: Resources = GPU_RESOURCES) -> dict:
    """`@task` settings every GPU task shares: the GPU image, `resources` as request and limit, the accelerator, the
    GPU-taint toleration, spot nodes with retries, and a cache keyed by the code version."""
    return dict(
        container_image=GPU_IMAGE,
        requests=resources,
        limits=resources,
        accelerator=GPU_ACCELERATOR,
        pod_template=GPU_POD_TEMPLATE,
        interruptible=True,
        retries=GPU_RETRIES,
        cache=True,
        cache_version=CACHE_VERSION,
    )


def decode_config(config_json: str) -> PipelineConfig:
    return PipelineConfig.model_validate_json(config_json)


def execution_id() -> str | None:
    """The Flyte execution id (project:domain:name) when running under Flyte, else None."""
    import flytekit

    try:
        ex = flytekit.current_context().execution_id
    except Exception:  # outside a task context
        return None
    return f"{ex.project}:{ex.domain}:{ex.name}" if ex else None


def run_id() -> str | None:
    """The run that intermediate files are attributed to (embedding stats tell this run's work from reused shard
    files): the execution id on a cluster, shared by every task and map-task pod of one execution. Local runs
    are all named `local:local:local`, so there it is None and llmops uses one id per process (one `pyflyte run`)."""
    ex = execution_id()
    return None if ex in (None, "local:local:local") else ex
