""""Answer only from the documents": whether the index holds anything relevant to a question, before generating.

The score is the question's best dense (cosine) match in the index, `Retriever.best_dense_similarity`; the threshold
is the one the index stage resolved into the index manifest (calibrated on the eval set, set in the config, or the
config's fallback), so the chat engine refuses in serving exactly the questions evaluation measured it refusing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

from llmops.config import AnswerabilityConfig
from llmops.index.retriever import Retriever

__all__ = ["Answerability", "AnswerabilityCheck"]

log = logging.getLogger(__name__)

# The language whose message stands in for languages without one (AnswerabilityConfig requires it).
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class AnswerabilityCheck:
    answerable: bool
    score: float  # the best dense cosine similarity between the question and the index's chunks
    threshold: float


class Answerability:
    """Scores questions against one index with one threshold; `message(lang)` is the reply when one is refused."""

    def __init__(self, retriever: Retriever, threshold: float, messages: Mapping[str, str], threshold_from: str):
        self.retriever = retriever
        self.threshold = threshold
        self.threshold_from = threshold_from  # config | calibrated | fallback: where the threshold came from
        self.messages = dict(messages)

    @classmethod
    def for_retriever(cls, retriever: Retriever, config: AnswerabilityConfig) -> "Answerability | None":
        """None when `config.enabled` is false. The threshold is the index manifest's; an index built before
        manifests recorded one uses the config's threshold (`auto`: its fallback_threshold, logged)."""
        if not config.enabled:
            return None
        section = retriever.manifest.answerability
        if section is not None:
            return cls(retriever, section.threshold, config.messages, section.threshold_from)
        if config.threshold != "auto":
            return cls(retriever, config.threshold, config.messages, "config")
        log.warning(
            "index %s records no answerability threshold (built before they were calibrated): using "
            "answerability.fallback_threshold %s; rebuild the index to calibrate one",
            retriever.version, config.fallback_threshold,
        )
        return cls(retriever, config.fallback_threshold, config.messages, "fallback")

    def assess_batch(self, queries: Sequence[str]) -> list[AnswerabilityCheck]:
        """One k=1 dense search for the batch (evaluation); the query embeddings come from the retriever's cache
        when retrieval embedded them first."""
        scores = self.retriever.best_dense_similarity(list(queries)) if queries else []
        return [AnswerabilityCheck(bool(s >= self.threshold), float(s), self.threshold) for s in scores]

    async def assess(self, query: str) -> AnswerabilityCheck:
        """One question (serving), in a worker thread: embedding and FAISS search must not block the event loop."""
        (check,) = await asyncio.to_thread(self.assess_batch, [query])
        return check

    def message(self, lang: str) -> str:
        """The configured reply in `lang`, else in English."""
        return self.messages.get(lang) or self.messages[FALLBACK_LANGUAGE]
