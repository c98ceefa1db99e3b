"""Open a generation client for a run: in-process transformers, a vLLM server we start, or one that is running.

The eval stage calls this once per model it evaluates. With `backend: vllm` and no `base_url`, a vLLM server is
started for the run with the adapter registered as a LoRA module (as serving does), and stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from llmops.config import LLMConfig
from llmops.errors import ConfigError
from llmops.llm.client import GenerationClient
from llmops.llm.openai_client import OpenAICompatibleClient
from llmops.llm.transformers_client import TransformersClient

__all__ = ["adapter_model_name", "make_client", "open_client"]


def adapter_model_name(adapter_name: str | None) -> str | None:
    """The name an adapter is served under (vLLM model names: letters, digits, '-', '_', '.')."""
    if adapter_name is None:
        return None
    return "adapter-" + re.sub(r"[^A-Za-z0-9_.-]", "-", adapter_name)


@contextlib.contextmanager
def open_client(
    llm: LLMConfig, *, adapter_dir: Path | None = None, adapter_name: str | None = None
) -> Iterator[GenerationClient]:
    served_name = adapter_model_name(adapter_name or (adapter_dir.name if adapter_dir else None))
    if llm.backend == "transformers":
        yield make_client(llm, adapter_path=str(adapter_dir) if adapter_dir else None)
        return
    if llm.base_url is not None:
        # A server someone else runs: the adapter is registered at run time (needs
        # VLLM_ALLOW_RUNTIME_LORA_UPDATING=True on that server) and removed afterwards.
        from llmops.llm.vllm_server import load_lora_adapter, unload_lora_adapter

        if adapter_dir is not None:
            load_lora_adapter(llm.base_url, served_name, str(adapter_dir))
        try:
            yield make_client(llm, base_url=llm.base_url, served_model_name=served_name)
        finally:
            if adapter_dir is not None:
                unload_lora_adapter(llm.base_url, served_name)
        return
    from llmops.llm.vllm_server import VLLMServer

    with tempfile.TemporaryDirectory(prefix="llmops-vllm-") as workdir:
        lora = {served_name: str(adapter_dir)} if adapter_dir is not None else {}
        with VLLMServer.from_config(llm, lora_modules=lora, workdir=Path(workdir)) as server:
            yield make_client(llm, base_url=server.base_url, served_model_name=served_name)


def make_client(
    llm: LLMConfig,
    *,
    adapter_path: str | None = None,
    base_url: str | None = None,
    served_model_name: str | None = None,
) -> GenerationClient:
    """The client for `llm`.

    A `base_url` (argument, else `llm.base_url` with `backend: vllm`) gives an `OpenAICompatibleClient` that asks for
    `served_model_name` (an adapter's LoRA module name) or else the base model, served under `llm.model` (vLLM's
    default `--served-model-name`). `backend: transformers` without a `base_url` loads the model in-process, with
    `adapter_path` applied.
    """
    url = base_url or (llm.base_url if llm.backend == "vllm" else None)
    if url is not None:
        if adapter_path is not None and served_model_name is None:
            raise ConfigError(
                "llm",
                [
                    "an adapter on a vLLM server is addressed by its served name: register it (--lora-modules "
                    "NAME=PATH or vllm_server.load_lora_adapter) and pass served_model_name=NAME"
                ],
            )
        return OpenAICompatibleClient(
            url,
            served_model_name or llm.served_model_name or llm.model,
            api_key=os.environ.get(llm.api_key_env),
            timeout_s=llm.request_timeout_s,
            max_concurrency=llm.max_concurrency,
            tokenizer=llm.model,
            tokenizer_revision=llm.revision,
        )
    if llm.backend == "vllm":
        raise ConfigError(
            "llm.base_url",
            [
                "backend vllm needs a server: set llm.base_url to a running OpenAI-compatible server (…/v1), or start "
                "one with llmops.llm.vllm_server.VLLMServer.from_config(llm) and pass base_url=server.base_url"
            ],
        )
    return TransformersClient(
        llm.model,
        adapter_path=adapter_path,
        revision=llm.revision,
        dtype=llm.dtype,
        device=llm.device,
        max_batch_size=llm.max_concurrency,
        served_model_name=served_model_name,
        max_model_len=llm.max_model_len,
    )
