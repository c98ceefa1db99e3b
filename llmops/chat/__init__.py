"""Chat: the one conversation path of serving and evaluation (guardrails, follow-up rewrite, answerability, history
in the prompt) around `llmops.rag.chain.RagChain`.

The re-exports below are lazy (`llmops.exports`): importing this package loads no model library.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "conversation": ("Conversation", "Turn"),
        "rewrite": ("QueryRewriter", "Rewrite"),
        "engine": ("ChatEngine", "ChatReply", "ChatStream", "Refusal"),
        "answerability": ("Answerability", "AnswerabilityCheck"),
    },
)
