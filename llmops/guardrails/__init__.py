"""Guardrails: input and output policies of the chat path (PII, blocked terms and topics, prompt-injection markers,
maximum lengths, an optional moderation model), in serving and in evaluation.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "decision": ("GuardDecision", "GuardOutcome", "StreamCheck"),
        "builtin": ("BuiltinChecks",),
        "moderation": ("ModerationClient", "parse_verdict"),
        "stream": ("OutputStreamGuard",),
        "pipeline": ("Guardrails",),
    },
)
