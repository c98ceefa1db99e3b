"""Releases: the registry of immutable releases and movable aliases, promotion behind the gates, and the checks of
a release's artifacts before an alias or a server moves to it.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "registry": ("Release", "ReleaseRegistry", "diff_releases"),
        "promotion": ("PromotionResult", "production_baseline", "promote_candidate"),
        "artifacts": ("VerifiedRelease", "pin_artifacts", "verify_release"),
    },
)
