"""Chat: the one conversation path of serving and evaluation. This package's answerability check says whether the
documents can answer a question at all ("answer only from the documents").

The re-exports below are lazy (`llmops.exports`): importing this package loads no model library.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "answerability": ("Answerability", "AnswerabilityCheck"),
    },
)
