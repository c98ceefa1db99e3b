"""The relevance threshold each logged request is judged against: a configured one, or the answerability threshold
of the index that answered it (its release's index manifest), so "low relevance" means what serving meant."""

from __future__ import annotations

import tempfile
from typing import Callable

from llmops.errors import LLMOpsError
from llmops.index.artifact import MANIFEST_NAME, read_manifest
from llmops.release.registry import ReleaseRegistry
from llmops.requestlog.record import RequestRecord
from llmops.storage import fetch_file, is_remote, join_uri

__all__ = ["threshold_lookup"]


def threshold_lookup(min_relevance: float | None, registry_root: str) -> Callable[[RequestRecord], float | None]:
    """`min_relevance` for every request when set; else its release's index threshold (None when the release is
    unknown to this registry or its index has no answerability section: such requests are checked by feedback
    and refusals only). Each release's manifest is read once."""
    if min_relevance is not None:
        return lambda record: min_relevance
    registry = ReleaseRegistry(registry_root)
    known: dict[str, float | None] = {}

    def lookup(record: RequestRecord) -> float | None:
        if record.release not in known:
            known[record.release] = _release_threshold(registry, record.release)
        return known[record.release]

    return lookup


def _release_threshold(registry: ReleaseRegistry, release_id: str) -> float | None:
    try:
        release = registry.get(release_id)
        if is_remote(release.index_uri):
            with tempfile.TemporaryDirectory(prefix="llmops-manifest-") as scratch:
                local = fetch_file(join_uri(release.index_uri, MANIFEST_NAME), scratch)
                manifest = read_manifest(local.parent)
        else:
            manifest = read_manifest(release.index_uri)
    except LLMOpsError:
        return None
    return manifest.answerability.threshold if manifest.answerability is not None else None
