"""What every Flyte task shares: images, resources, caching, timeouts, retries and config decoding.

Tasks are thin wrappers: they decode inputs, call one plain function from `llmops`, publish a Deck and return URIs.
Intermediate outputs are URIs into the artifact store named by content digests, and every cached task also takes
its `stage_key` (llmops/provenance/stage_inputs.py: the content of the config fields, files, code and libraries it reads), so
Flyte's cache key is the content of what the task reads and cached results never point at Flyte's scratch folders
(see docs/caching.md).
"""

from __future__ import annotations

from flytekit import PodTemplate, Resources, Secret
from flytekit.extras.accelerators import L4
from kubernetes.client import V1PodSpec, V1Toleration

from datetime import timedelta

from llmops.config import PipelineConfig
from llmops.provenance.stage_inputs import KEY_SCHEMA, stage_config

__all__ = [
    "CPU_RESOURCES",
    "GPU_ACCELERATOR",
    "GPU_IMAGE",
    "GPU_POD_TEMPLATE",
    "GPU_RESOURCES",
    "EVAL_SECRETS",
    "GPU_RETRIES",
    "MODEL_SECRETS",
    "SECRET_GROUP",
    "TIMEOUTS",
    "cache_settings",
    "decode_config",
    "execution_id",
    "gpu_task_settings",
    "run_id",
]

# Registered with `pyflyte register --image default=<cpu image> --image gpu=<gpu image>`; see README.
GPU_IMAGE = "{{.image.gpu.fqn}}:{{.image.gpu.version}}"


class MissingGpuImage(ValueError):
    """`pyflyte package/register/run --remote` was given no `--image gpu=...` for the GPU tasks."""


def _name_the_gpu_image_flag() -> None:
    """flytekit reports a missing `gpu` image as `AssertionError: Image Config with name gpu not found`, which names
    no flag; make the lookup of that one image say what to pass instead (every other lookup is unchanged)."""
    from flytekit.configuration import ImageConfig

    find_image = ImageConfig.find_image
    if getattr(find_image, "llmops_names_gpu_flag", False):
        return

    def find(self, name):
        found = find_image(self, name)
        if found is None and name == "gpu":
            raise MissingGpuImage(
                "the GPU tasks (embed_shard, finetune, evaluate_model) run on the GPU image, and none was given: add "
                "`--image gpu=<registry>/flyte-llmops:gpu-<sha>` after `--image <cpu image>` (README, 'Run on a "
                "Flyte cluster')"
            )
        return found

    find.llmops_names_gpu_flag = True
    ImageConfig.find_image = find


_name_the_gpu_image_flag()

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

# GPU tasks run on spot nodes (`interruptible=True`). A preemption is a *system* failure in Flyte, retried under the
# platform's system-retry budget, not these user retries; their outputs are content-addressed, so a rerun is safe.
# User retries repeat the task after an error of its own: one retry covers a transient one (a Hub or object-store
# download), while a deterministic failure (out of memory, bad data) fails again at the GPU's price, so not more.
GPU_RETRIES = 1

# Wall-clock limits per task: a hung download or a stuck NCCL/vLLM process must not hold a GPU node for days.
# Sized for the largest runs the GPU config targets (7-8B models, ~1M chunks); raise them for bigger ones.
TIMEOUTS = {
    "cpu": timedelta(hours=2),
    "embed": timedelta(hours=2),  # one shard of embedding.shard_size chunks
    "finetune": timedelta(hours=12),
    "evaluate": timedelta(hours=4),
}


# Credentials reach tasks as Flyte Secrets (on Kubernetes, keys of the Secret `llmops` in the project's namespace,
# injected as environment variables by Flyte's secret webhook); locally, the same variables come from the shell.
# Every key must exist (an empty value where unused): a pod whose secret is missing does not start.
SECRET_GROUP = "llmops"
HF_TOKEN = Secret(group=SECRET_GROUP, key="hf-token", mount_requirement=Secret.MountType.ENV_VAR, env_var="HF_TOKEN")
LLM_API_KEY = Secret(
    group=SECRET_GROUP, key="llm-api-key", mount_requirement=Secret.MountType.ENV_VAR, env_var="LLMOPS_LLM_API_KEY"
)
JUDGE_API_KEY = Secret(
    group=SECRET_GROUP, key="judge-api-key", mount_requirement=Secret.MountType.ENV_VAR, env_var="LLMOPS_JUDGE_API_KEY"
)
MODEL_SECRETS = [HF_TOKEN]  # tasks that download models (gated Hub models need a token)
EVAL_SECRETS = [HF_TOKEN, LLM_API_KEY, JUDGE_API_KEY]  # evaluation also calls the LLM server and the RAGAS judge


def cache_settings() -> dict:
    """Flyte cache settings of every cached task: the task takes `stage_key` (the content of the config fields,
    files, code and libraries its stage reads) and its config JSON stays out of Flyte's key, so a change to a field
    the stage does not read re-runs nothing while one it reads changes `stage_key`."""
    return dict(cache=True, cache_version=KEY_SCHEMA, cache_ignore_input_vars=("config_json",))


def cpu_task_settings(cached: bool = True) -> dict:
    """`@task` settings the CPU stages share: CPU requests and timeout, the model secrets (they load the embedding
    model or its tokenizer, or read Hub datasets), the stage-keyed cache when `cached`, and a Deck."""
    return dict(
        requests=CPU_RESOURCES,
        timeout=TIMEOUTS["cpu"],
        secret_requests=MODEL_SECRETS,
        **(cache_settings() if cached else {}),
        enable_deck=True,
        deck_fields=(),
    )


def gpu_task_settings(
    resources: Resources = GPU_RESOURCES,
    timeout: timedelta = TIMEOUTS["evaluate"],
    secrets: list[Secret] = MODEL_SECRETS,
) -> dict:
    """`@task` settings every GPU task shares: the GPU image, `resources` as request and limit, the accelerator, the
    GPU-taint toleration, spot nodes, retries and timeout, and the stage-keyed cache."""
    return dict(
        container_image=GPU_IMAGE,
        requests=resources,
        limits=resources,
        accelerator=GPU_ACCELERATOR,
        pod_template=GPU_POD_TEMPLATE,
        interruptible=True,
        retries=GPU_RETRIES,
        timeout=timeout,
        secret_requests=secrets,
        **cache_settings(),
    )


def decode_config(config_json: str, stage: str | None = None) -> PipelineConfig:
    """The run's config; for a cached stage, the view of it that the stage's key covers (any other field raises)."""
    cfg = PipelineConfig.model_validate_json(config_json)
    return stage_config(cfg, stage) if stage else cfg


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
