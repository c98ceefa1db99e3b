"""A release's artifacts, checked before an alias moves to the release and before a server swaps to it.

A release names its index and adapter by location and pins the sha256 of each artifact's manifest, which lists the
sha256 of every file: the pin binds every byte that is served to the release that was evaluated. `verify_release`
(used by `llmops registry promote` and by the server's release loader):

1. normalizes each location once (`storage.canonical_uri`) and refuses one outside the artifact and registry roots;
   the normalized location is the one that is read afterwards, so the check and the read cannot disagree;
2. refuses a release that pins nothing (registered before release schema 2): its artifacts cannot be told apart
   from edited ones. `llmops registry repin` registers a pinned copy of it, after an operator vouches for it;
3. checks each manifest against its pin, every file against its manifest, and the versions against the release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from llmops.index.artifact import MANIFEST_NAME, IndexManifest, materialize, verify_artifact
from llmops.config import PipelineConfig
from llmops.errors import ArtifactIntegrityError, RegistryError
from llmops.finetune.manifest import ADAPTER_MANIFEST, AdapterManifest, verify_adapter
from llmops.release.registry import Release
from llmops.storage import canonical_uri, is_remote, local_path, sha256_file, uri_within

__all__ = [
    "VerifiedRelease",
    "artifact_roots",
    "ensure_within",
    "pin_artifacts",
    "verify_release",
    "verify_release_adapter",
    "verify_release_index",
]


@dataclass(frozen=True)
class VerifiedRelease:
    """Local folders holding a release's artifacts, checked against its pins, and their manifests."""

    release: Release
    index_dir: Path
    index: IndexManifest
    adapter_dir: Path | None = None
    adapter: AdapterManifest | None = None


def artifact_roots(config: PipelineConfig) -> tuple[str, ...]:
    """Where a release's index and adapter may live: the artifact store and the registry."""
    return tuple(dict.fromkeys([config.artifacts.root, config.artifacts.registry_root]))


def ensure_within(uri: str, roots: Sequence[str], what: str) -> str:
    """The canonical form of `uri` (read that, not `uri`) if it lies inside one of `roots`; RegistryError if not.

    A release names its artifacts by location; a tampered or careless release must not make the server read (or
    hand vLLM) files outside the artifact store. Relative paths are refused: they would mean one thing where the
    release was registered and another where it is served.
    """
    try:
        if not is_remote(uri) and not local_path(uri).is_absolute():
            raise ValueError(f"{uri!r} is a relative path")
        canonical = canonical_uri(uri)
    except ValueError as e:
        raise RegistryError(f"{what}: {e}. Register releases whose artifacts are named by absolute path or URI "
                            "inside artifacts.root.") from None
    if any(uri_within(canonical, canonical_uri(root)) for root in roots):
        return canonical
    raise RegistryError(
        f"{what} {uri!r} lies outside the artifact and registry roots ({', '.join(roots)}): refusing to load it. "
        "Register releases whose artifacts live in artifacts.root."
    )


def pin_artifacts(index_uri: str, adapter_uri: str | None, cache_dir: str | None = None) -> dict[str, str | None]:
    """The manifest digests a release of these artifacts pins, after checking every file against its manifest
    (what is pinned is what was verified). Keyword arguments for `ReleaseRegistry.register`."""
    index_dir = materialize(index_uri)
    pins: dict[str, str | None] = {"index_manifest_sha256": _pinned_digest(index_dir, MANIFEST_NAME, verify_artifact)}
    pins["adapter_manifest_sha256"] = None
    if adapter_uri is not None:
        pins["adapter_manifest_sha256"] = _pinned_digest(materialize(adapter_uri, cache_dir), ADAPTER_MANIFEST,
                                                         verify_adapter)
    return pins


def _pinned_digest(directory: Path, manifest_name: str, verify) -> str:
    path = directory / manifest_name
    if not path.is_file():  # verify says what is missing
        verify(directory)
    digest = sha256_file(path)
    verify(directory, manifest_sha256=digest)  # the manifest hashed is the manifest the files were checked against
    return digest


def verify_release(release: Release, roots: Sequence[str], cache_dir: str | None = None) -> VerifiedRelease:
    """Check a release before it is promoted or served (module docstring); its artifacts as local folders.

    `cache_dir`: where an adapter in an object store is downloaded (vLLM must see it at that path)."""
    index_dir, index = verify_release_index(release, roots)
    adapter_dir, adapter = verify_release_adapter(release, roots, cache_dir)
    return VerifiedRelease(release, index_dir, index, adapter_dir, adapter)


def verify_release_index(release: Release, roots: Sequence[str]) -> tuple[Path, IndexManifest]:
    """The release's index folder and manifest, checked against the release (`verify_release`)."""
    what = f"release {release.release}"
    index_uri = ensure_within(release.index_uri, roots, f"{what}: index_uri")
    _check_pinned(release)
    index_dir = materialize(index_uri)
    index = verify_artifact(index_dir, manifest_sha256=release.index_manifest_sha256)
    _same_version(what, "index", release.index_version, index.version)
    return index_dir, index


def verify_release_adapter(
    release: Release, roots: Sequence[str], cache_dir: str | None = None
) -> tuple[Path, AdapterManifest] | tuple[None, None]:
    """The release's adapter folder and manifest, checked against the release; (None, None) without an adapter.
    (`llmops serve` checks the adapter it hands vLLM at start-up with this.)"""
    if release.adapter_uri is None:
        return None, None
    what = f"release {release.release}"
    adapter_uri = ensure_within(release.adapter_uri, roots, f"{what}: adapter_uri")
    _check_pinned(release)
    adapter_dir = materialize(adapter_uri, cache_dir)
    adapter = verify_adapter(adapter_dir, manifest_sha256=release.adapter_manifest_sha256)
    if release.adapter_version is not None:
        _same_version(what, "adapter", release.adapter_version, adapter.version)
    return adapter_dir, adapter


def _check_pinned(release: Release) -> None:
    unpinned = release.unpinned()
    if unpinned:
        raise RegistryError(
            f"release {release.release} pins no manifest digest for its {' and '.join(unpinned)} (it was registered "
            "before release schema 2), so what is stored cannot be checked against what was evaluated: it is not "
            f"promoted or served. After checking its artifacts, run `llmops registry repin {release.release}` and "
            "promote the release it prints (or re-run the pipeline, whose promote step pins them)."
        )


def _same_version(what: str, kind: str, released: str, found: str) -> None:
    if released != found:
        raise ArtifactIntegrityError(
            f"{what} names {kind} version {released}, but its {kind} artifact is version {found}: the release points "
            f"at another artifact than the one evaluated. Register a release for the {kind} that was evaluated."
        )
