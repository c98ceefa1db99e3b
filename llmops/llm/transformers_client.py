"""`TransformersClient`: in-process `generate()` for CPU tests and small runs, with an optional PEFT adapter.

Same sampling semantics as the server path (see `llmops.llm.client`): temperature 0 is greedy, stop strings end the
answer and are not part of it, special tokens are not part of the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Iterator, Sequence

from llmops.config import SamplingConfig
from llmops.errors import ConfigError, ContextLengthError
from llmops.llm.client import Generation, Messages, StreamDelta

__all__ = ["TransformersClient"]




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
