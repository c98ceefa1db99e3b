"""The one prompt template and the one prompt budget: question + retrieved chunks -> chat messages.

Fine-tuning, evaluation and serving all build their prompts here and fit them to `prompt_budget`, so the model is
trained on, measured on and served exactly the same format. Retrieved text is placed inside delimited, numbered
context blocks and the system message says that context is reference material, not instructions. Every piece of
text that is not the template's own (chunk text, titles, sources, the user's question) is escaped, so none of it
can open or close a context block.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from llmops.config import PromptConfig, PromptTemplateConfig
from llmops.corpus.lang import detect_lang
from llmops.index.retriever import SearchHit

__all__ = ["Prompt", "PromptBuilder", "chat_template_overhead", "prompt_budget"]

# The tag the default context template uses; a template's own tags are escaped as well.
_DEFAULT_DELIMITER_TAG = "context"


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    lang: str
    contexts: tuple[SearchHit, ...]  # the hits that made it into the prompt, in order ([1], [2], ...)
    tokens: int | None = None  # the messages' content tokens, when a budget was fitted with a tokenizer
    history_turns: int = 0  # earlier conversation messages kept between the system message and the question


class PromptBuilder:
    def __init__(self, config: PromptConfig, count_tokens: Callable[[str], int] | None = None):
        """`count_tokens` (the LLM's tokenizer) enables fitting contexts into a token budget."""
        self.config = config
        self.count_tokens = count_tokens

    def template_for(self, question: str) -> tuple[str, PromptTemplateConfig]:
        lang = self.config.language if self.config.language != "auto" else detect_lang(question)
        if lang not in self.config.templates:
            lang = self.config.fallback_language
        return lang, self.config.templates[lang]

    def build(
        self,
        question: str,
        hits: Sequence[SearchHit],
        max_prompt_tokens: int | None = None,
        history: Sequence[Mapping[str, str]] = (),
        history_tokens: int | None = None,
    ) -> Prompt:
        """Messages for one question: the system message, the earlier turns of the conversation (`history`, OpenAI
        messages, oldest first), then the contexts and the question. With a token budget, the oldest turns are
        dropped until the history takes at most `history_tokens`, then the lowest-ranked contexts until it all fits."""
        lang, template = self.template_for(question)
        delimiters = _delimiter_pattern(template.context)
        turns = self._fit_history(history, history_tokens, delimiters)
        kept = list(hits)
        while True:
            messages = self._messages(template, question, kept, turns, delimiters)
            if max_prompt_tokens is None or self.count_tokens is None:
                return Prompt(messages=messages, lang=lang, contexts=tuple(kept), history_turns=len(turns))
            tokens = sum(self.count_tokens(m["content"]) for m in messages)
            if tokens <= max_prompt_tokens or not kept:
                # The count goes with the prompt: callers check the budget without tokenizing it again.
                return Prompt(messages=messages, lang=lang, contexts=tuple(kept), tokens=tokens, history_turns=len(turns))
            kept.pop()

    def _fit_history(
        self, history: Sequence[Mapping[str, str]], max_tokens: int | None, delimiters: re.Pattern[str]
    ) -> list[dict[str, str]]:
        """The most recent turns that fit `max_tokens`, starting with a user turn (chat templates expect a user
        message after the system one). The turns are escaped like the question: they are the user's text too."""
        turns = [{"role": t["role"], "content": _escape_text(t["content"], delimiters)} for t in history]
        if max_tokens is not None and self.count_tokens is not None:
            sizes = [self.count_tokens(t["content"]) for t in turns]
            while turns and sum(sizes) > max_tokens:
                turns.pop(0)
                sizes.pop(0)
        while turns and turns[0]["role"] != "user":
            turns.pop(0)
        return turns

    @staticmethod
    def _messages(
        template: PromptTemplateConfig,
        question: str,
        hits: Sequence[SearchHit],
        history: Sequence[dict[str, str]],
        delimiters: re.Pattern[str],
    ) -> list[dict[str, str]]:
        blocks = [
            template.context.format(
                index=i,
                title=_escape_attr(h.title, delimiters),
                source=_escape_attr(h.source, delimiters),
                text=_escape_text(h.text, delimiters),
            )
            for i, h in enumerate(hits, 1)
        ]
        # The question is the user's text: escaped like chunk text, or it could forge a context block of its own.
        user = template.user.format(contexts="\n\n".join(blocks), question=_escape_text(question.strip(), delimiters))
        return [{"role": "system", "content": template.system}, *history, {"role": "user", "content": user}]


def prompt_budget(max_model_len: int, max_tokens: int, template_overhead: int) -> int:
    """Tokens the messages' contents may take: the model's context less the answer's `max_tokens` and the chat
    template's own tokens (`chat_template_overhead`), which the server counts too. Evaluation, serving and
    fine-tuning all fit their prompts to this one number."""
    return max_model_len - max_tokens - template_overhead


def chat_template_overhead(tokenizer, margin: int = 2) -> int:
    """Tokens a chat template adds to a system + user conversation beyond the messages' own tokens, plus a small
    margin for merges at the boundaries. `tokenizer` is the LLM's (transformers) tokenizer."""
    messages = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    total = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    own = sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in messages)
    return max(0, total - own) + margin


@functools.lru_cache(maxsize=32)
def _delimiter_pattern(context_template: str) -> re.Pattern[str]:
    """Where text could open or close a context block: `<tag` or `</tag` for the template's tags (and the default
    `context`), in any case and with any spacing after the `<`, as a lenient reader of the prompt would take it."""
    tags = {_DEFAULT_DELIMITER_TAG, *(t.lower() for t in re.findall(r"<\s*/?\s*([A-Za-z][\w.:-]*)", context_template))}
    alternatives = "|".join(re.escape(t) for t in sorted(tags))
    return re.compile(rf"<(?=\s*/?\s*(?:{alternatives})(?![\w.:-]))", re.IGNORECASE)


def _escape_text(text: str, delimiters: re.Pattern[str]) -> str:
    """The `<` of every delimiter tag becomes `&lt;`: the text reads the same but opens or closes no block."""
    return delimiters.sub("&lt;", text)


def _escape_attr(value: str, delimiters: re.Pattern[str]) -> str:
    """Titles and sources sit inside the opening tag: no quotes or line breaks that could end it."""
    return " ".join(_escape_text(value, delimiters).replace('"', "'").split())
