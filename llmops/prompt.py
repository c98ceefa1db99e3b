"""The one prompt template: question + retrieved chunks -> chat messages.

Fine-tuning, evaluation and serving all build their prompts here, so the model is trained on, measured on and
served exactly the same format. Retrieved text is placed inside delimited, numbered context blocks and the
system message says that context is reference material, not instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from llmops.config import PromptConfig, PromptTemplateConfig
from llmops.lang import detect_lang
from llmops.retriever import SearchHit

__all__ = ["Prompt", "PromptBuilder"]

# Context delimiters that a chunk could use to close its block early are neutralised.
_DELIMITER_ESCAPES = {"<context": "&lt;context", "</context": "&lt;/context"}


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    lang: str
    contexts: tuple[SearchHit, ...]  # the hits that made it into the prompt, in order ([1], [2], ...)
    tokens: int | None = None  # the messages' content tokens, when a budget was fitted with a tokenizer


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
        self, question: str, hits: Sequence[SearchHit], max_prompt_tokens: int | None = None
    ) -> Prompt:
        """Messages for one question. With a token budget, the lowest-ranked contexts are dropped to fit."""
        lang, template = self.template_for(question)
        kept = list(hits)
        while True:
            messages = self._messages(template, question, kept)
            if max_prompt_tokens is None or self.count_tokens is None:
                return Prompt(messages=messages, lang=lang, contexts=tuple(kept))
            tokens = sum(self.count_tokens(m["content"]) for m in messages)
            if tokens <= max_prompt_tokens or not kept:
                # The count goes with the prompt: callers check the budget without tokenizing it again.
                return Prompt(messages=messages, lang=lang, contexts=tuple(kept), tokens=tokens)
            kept.pop()

    @staticmethod
    def _messages(template: PromptTemplateConfig, question: str, hits: Sequence[SearchHit]) -> list[dict[str, str]]:
        blocks = [
            template.context.format(
                index=i, title=_escape_attr(h.title), source=_escape_attr(h.source), text=_escape_text(h.text)
            )
            for i, h in enumerate(hits, 1)
        ]
        user = template.user.format(contexts="\n\n".join(blocks), question=question.strip())
        return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


def _escape_text(text: str) -> str:
    for raw, safe in _DELIMITER_ESCAPES.items():
        text = text.replace(raw, safe)
    return text


def _escape_attr(value: str) -> str:
    """Titles and sources sit inside the opening tag: no quotes or line breaks that could end it."""
    return " ".join(_escape_text(value).replace('"', "'").split())
