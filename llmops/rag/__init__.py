"""RAG: the one prompt template and prompt budget, and `RagChain`, the one retrieve -> prompt -> generate path of
evaluation and serving.

The re-exports below are lazy (`llmops.exports`): importing this package loads no model library.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "prompt": ("Prompt", "PromptBuilder", "prompt_budget"),
        "chain": ("RagAnswer", "RagChain", "RagStream"),
    },
)
