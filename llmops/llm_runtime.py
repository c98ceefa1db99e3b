"""Open a generation client for a run: in-process transformers, a vLLM server we start, or one that is running.

The eval stage calls this once per model it evaluates. With `backend: vllm` and no `base_url`, a vLLM server is
started for the run with the adapter registered as a LoRA module (as serving does), and stopped afterwards.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Iterator

from llmops.config import LLMConfig
from llmops.generation import GenerationClient, make_client

__all__ = ["adapter_model_name", "open_client"]


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
        from llmops.vllm_server import load_lora_adapter, unload_lora_adapter

        if adapter_dir is not None:
            load_lora_adapter(llm.base_url, served_name, str(adapter_dir))
        try:
            yield make_client(llm, base_url=llm.base_url, served_model_name=served_name)
        finally:
            if adapter_dir is not None:
                unload_lora_adapter(llm.base_url, served_name)
        return
    from llmops.vllm_server import VLLMServer

    with tempfile.TemporaryDirectory(prefix="llmops-vllm-") as workdir:
        lora = {served_name: str(adapter_dir)} if adapter_dir is not None else {}
        with VLLMServer.from_config(llm, lora_modules=lora, workdir=Path(workdir)) as server:
            yield make_client(llm, base_url=server.base_url, served_model_name=served_name)
