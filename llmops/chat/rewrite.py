"""Follow-up questions -> standalone retrieval queries.

"And how long does that take?" finds nothing on its own: retrieval needs the subject from the earlier turns. The
served model rewrites the follow-up (through the same client, so the same adapter); when that fails, times out or
answers with text that shares too little with the conversation (a weak or random model), the cheap fallback searches
the previous user message and the follow-up together. A question without history is searched as it is.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Literal

from llmops.chat.conversation import Conversation
from llmops.config import ChatConfig, SamplingConfig
from llmops.corpus.documents import followup_query
from llmops.errors import LLMOpsError
from llmops.llm.client import GenerationClient

__all__ = ["QueryRewriter", "Rewrite"]

Method = Literal["none", "llm", "concat", "fallback"]

# Words for the overlap check: runs of letters/digits, and single CJK characters (Japanese has no spaces).
_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]|[^\W_]+")
_LABEL = re.compile(r"^\s*(?:standalone (?:search )?(?:question|query)|query|question|クエリ|質問)\s*[:：]\s*", re.I)


@dataclass(frozen=True)
class Rewrite:
    query: str  # what retrieval searches for
    method: Method  # none: no history; llm: the model's rewrite; concat: configured; fallback: the llm rewrite failed
    elapsed_s: float = 0.0
    reason: str | None = None  # why the llm rewrite was not used (fallback only)


class QueryRewriter:
    def __init__(self, client: GenerationClient, config: ChatConfig, fallback_language: str = "en"):
        self.client = client
        self.config = config
        self.fallback_language = fallback_language
        self.sampling = SamplingConfig(temperature=0.0, max_tokens=config.rewrite_max_tokens, seed=0)

    async def rewrite(self, conversation: Conversation, lang: str) -> Rewrite:
        if not conversation.history or self.config.rewrite == "off":
            return Rewrite(conversation.question, "none")
        if self.config.rewrite == "concat":
            return Rewrite(self.concat(conversation), "concat")
        started = time.perf_counter()
        try:
            text = await asyncio.wait_for(self._ask_model(conversation, lang), self.config.rewrite_timeout_s)
            query = self._accept(text, conversation)
            return Rewrite(query, "llm", time.perf_counter() - started)
        except (LLMOpsError, TimeoutError, ValueError) as e:
            reason = "timed out" if isinstance(e, TimeoutError) else str(e)
            return Rewrite(self.concat(conversation), "fallback", time.perf_counter() - started, reason)

    @staticmethod
    def concat(conversation: Conversation) -> str:
        return followup_query(conversation.question, [(t.role, t.content) for t in conversation.history])

    def messages(self, conversation: Conversation, lang: str) -> list[dict[str, str]]:
        prompts = self.config.rewrite_prompts
        system = prompts.get(lang) or prompts.get(self.fallback_language) or next(iter(prompts.values()))
        limit = self.config.rewrite_turn_chars
        lines = [f"{t.role}: {' '.join(t.content.split())[:limit]}" for t in conversation.recent(self.config.max_history_turns)]
        user = "\n".join([*lines, f"user (last message): {' '.join(conversation.question.split())}"])
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def _ask_model(self, conversation: Conversation, lang: str) -> str:
        (generation,) = await self.client.agenerate([self.messages(conversation, lang)], self.sampling)
        return generation.text

    def _accept(self, text: str, conversation: Conversation) -> str:
        """The rewrite's first line without a label or quotes; ValueError when it is empty or off the conversation."""
        line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
        query = _LABEL.sub("", line).strip().strip("\"'「」").strip()
        if not query:
            raise ValueError("the model's rewrite was empty")
        words = [w.casefold() for w in _WORDS.findall(query)]
        known = {w.casefold() for t in (*conversation.history, conversation.question) for w in _WORDS.findall(
            t if isinstance(t, str) else t.content)}
        overlap = sum(w in known for w in words) / max(len(words), 1)
        if overlap < self.config.rewrite_min_overlap:
            raise ValueError(
                f"the model's rewrite shares {overlap:.0%} of its words with the conversation "
                f"(chat.rewrite_min_overlap is {self.config.rewrite_min_overlap:.0%})"
            )
        return query
