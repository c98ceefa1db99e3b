"""The request log: one durable, append-only record per answered request and per feedback, written by serving and
read back by the monitor and the feedback export (production traffic feeding the next release).

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "record": ("FeedbackRecord", "LoggedGuardDecision", "LoggedSource", "RequestLatency", "RequestRecord",
                   "parse_log_line"),
        "reader": ("LogWindow", "read_window"),
        "writer": ("RequestLogWriter",),
    },
)
