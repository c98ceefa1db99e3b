"""The release registry: immutable releases, movable aliases, and the history of every move.

Layout under the registry root (a local path, or `s3://` / `gs://` through fsspec: one code path):

    releases/<release>/release.json     immutable; <release> is a digest of what the release binds
    aliases/<alias>.json                a small pointer file, replaced atomically (temp + rename, one object put)
    history/<alias>/<ns>-<rand>.json    one append-only event per promote / rollback, in time order

A crash at any point leaves the previous alias in place: the pointer is only replaced once the release and the
history event are fully written. Locally, promotions of one alias are serialised with a lock file, so concurrent
promoters each get a consistent `previous`; on object stores the last writer wins (history keeps both events).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from fsspec.core import url_to_fs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import RegistryError
from llmops.storage import canonical_json, digest_of, is_remote

__all__ = [
    "AliasEvent",
    "AliasPointer",
    "GateOutcome",
    "RELEASE_SCHEMA_VERSION",
    "Release",
    "ReleaseRegistry",
    "diff_releases",
]

# 2: a release pins the sha256 of its index and adapter manifests. Releases of schema 1 pin nothing; they are
# listed and shown, but not promoted or served (`llmops registry repin` makes a pinned copy).
RELEASE_SCHEMA_VERSION = 2
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_RELEASE = re.compile(r"^r-[0-9a-f]{16}$")
_SHA256 = r"^[0-9a-f]{64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateOutcome(_Model):
    """What the gate decision checked: gates per status, and its one-line summary (which were skipped, and why)."""

    passed: int
    failed: int
    skipped: int
    summary: str


class Release(_Model):
    schema_version: int = RELEASE_SCHEMA_VERSION
    release: str
    created_at: str
    index_version: str
    index_uri: str
    # sha256 of the artifact's manifest: the manifest lists every file's sha256, so this pins every byte served.
    index_manifest_sha256: str | None = Field(default=None, pattern=_SHA256)
    base_model: str
    adapter_version: str | None
    adapter_uri: str | None
    adapter_manifest_sha256: str | None = Field(default=None, pattern=_SHA256)
    eval_report_uri: str
    gate_decision_uri: str | None
    gates_passed: bool
    gate_outcome: GateOutcome | None = None  # None in releases registered before outcomes were kept
    metrics: dict[str, float | None]  # the candidate's metrics, for list/diff without fetching the report
    config: dict
    git_sha: str
    flyte_execution_id: str | None

    def unpinned(self) -> list[str]:
        """The artifacts whose manifest digest the release does not pin (releases registered before schema 2)."""
        missing = [] if self.index_manifest_sha256 else ["index"]
        if self.adapter_uri is not None and not self.adapter_manifest_sha256:
            missing.append("adapter")
        return missing

    def binding(self) -> dict:
        """What the release id is a digest of: what is served and the evaluation that measured it.

        Not when, by which run or commit, or against which baseline it was gated: re-running the pipeline on
        unchanged inputs finds the existing release (and its original verdict) instead of minting an identical one.
        (The eval report's lineage holds the code version that produced it.)
        """
        return self.model_dump(
            exclude={"release", "created_at", "flyte_execution_id", "git_sha", "gate_decision_uri", "gates_passed",
                     "gate_outcome"}
        )

    def gates_label(self) -> str:
        """"passed", "passed, 1 of 3 gates skipped", "failed: nothing was checked (2 gates skipped)", "failed"."""
        outcome = self.gate_outcome
        if outcome is None:
            return "passed" if self.gates_passed else "failed"
        total = outcome.passed + outcome.failed + outcome.skipped
        if not self.gates_passed and outcome.passed + outcome.failed == 0:
            return f"failed: nothing was checked ({outcome.skipped} of {total} gates skipped)"
        skipped = f", {outcome.skipped} of {total} gates skipped" if outcome.skipped else ""
        return ("passed" if self.gates_passed else "failed") + skipped


class AliasPointer(_Model):
    alias: str
    release: str
    updated_at: str
    event: str  # the history event that set it


class AliasEvent(_Model):
    id: str
    alias: str
    action: str  # promote | rollback
    release: str
    previous: str | None
    at: str
    forced: bool = False
    reason: str | None = None
    actor: str | None = None


class ReleaseRegistry:
    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.fs, self._base = url_to_fs(self.root)

    # ----------------------------------------------------------------------------------------------- releases

    def register(self, **fields) -> Release:
        """Create (or find, when the same binding exists) an immutable release."""
        return self.register_or_find(**fields)[0]

    def register_or_find(self, **fields) -> tuple[Release, bool]:
        """`register`, and whether the release was created now (False: an earlier run registered this binding, and
        the release keeps that run's gate decision)."""
        draft = Release(release="r-" + "0" * 16, created_at=_now(), **fields)
        release_id = "r-" + digest_of(draft.binding(), 16)
        existing = self._read_release(release_id, missing_ok=True)
        if existing is not None:
            return existing, False
        release = draft.model_copy(update={"release": release_id})
        self._write_json(self._release_path(release_id), release.model_dump(mode="json"))
        return release, True

    def get(self, release: str) -> Release:
        return self._read_release(self._check_release_id(release))

    def releases(self) -> list[Release]:
        pattern = f"{self._base}/releases/*/release.json"
        out = [self._read_release(Path(p).parent.name) for p in self.fs.glob(pattern)]
        return sorted(out, key=lambda r: r.created_at)

    # ----------------------------------------------------------------------------------------------- aliases

    def resolve(self, alias: str) -> Release | None:
        pointer = self.pointer(alias)
        return None if pointer is None else self.get(pointer.release)

    def pointer(self, alias: str) -> AliasPointer | None:
        data = self._read_json(self._alias_path(self._check_alias(alias)), missing_ok=True)
        return None if data is None else AliasPointer.model_validate(data)

    def aliases(self) -> dict[str, AliasPointer]:
        paths = self.fs.glob(f"{self._base}/aliases/*.json")
        return {Path(p).stem: AliasPointer.model_validate(self._read_json(p)) for p in sorted(paths)}

    def history(self, alias: str) -> list[AliasEvent]:
        paths = self.fs.glob(f"{self._base}/history/{self._check_alias(alias)}/*.json")
        return [AliasEvent.model_validate(self._read_json(p)) for p in sorted(paths)]

    def promote(
        self, release: str, alias: str = "production", *, force: bool = False, reason: str | None = None,
        actor: str | None = None,
    ) -> AliasEvent:
        """Point `alias` at `release`. A release that did not pass its gates needs force=True and a reason."""
        target = self.get(release)
        if not target.gates_passed and not force:
            raise RegistryError(
                f"release {release} did not pass its gates (see {target.gate_decision_uri}); promoting it anyway "
                "needs --force --reason \"...\", which is recorded in the alias history"
            )
        if force and not (reason and reason.strip()):
            raise RegistryError("a forced promotion needs a reason (--reason \"...\"): it is kept in the history")
        return self._move(alias, target.release, "promote", forced=force, reason=reason, actor=actor)

    def rollback(self, alias: str = "production", *, reason: str | None = None, actor: str | None = None) -> AliasEvent:
        """Point `alias` back at the release it pointed to before the current one."""
        with self._locked(alias):
            current = self.pointer(alias)
            if current is None:
                raise RegistryError(f"alias {alias!r} points at nothing: there is nothing to roll back")
            events = self.history(alias)
            at = next((i for i in range(len(events) - 1, -1, -1) if events[i].id == current.event), None)
            previous = events[at].previous if at is not None else None
            if previous is None:
                raise RegistryError(f"alias {alias!r} has no earlier release to roll back to")
            return self._move(alias, previous, "rollback", reason=reason, actor=actor, locked=True)

    def _move(
        self, alias: str, release: str, action: str, *, forced: bool = False, reason: str | None = None,
        actor: str | None = None, locked: bool = False,
    ) -> AliasEvent:
        self._check_alias(alias)
        with contextlib.nullcontext() if locked else self._locked(alias):
            current = self.pointer(alias)
            at = _now()
            event = AliasEvent(
                # Sortable: nanoseconds first (events of one alias are serialised), then a random suffix.
                id=f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}",
                alias=alias,
                action=action,
                release=release,
                previous=current.release if current else None,
                at=at,
                forced=forced,
                reason=reason,
                actor=actor or os.environ.get("USER"),
            )
            # History first, pointer last: a crash in between leaves the old pointer (and an event that says what
            # was attempted), never a pointer without its history.
            self._write_json(self._history_path(alias, event.id), event.model_dump(mode="json"))
            pointer = AliasPointer(alias=alias, release=release, updated_at=at, event=event.id)
            self._write_json(self._alias_path(alias), pointer.model_dump(mode="json"))
            return event

    # ----------------------------------------------------------------------------------------------- storage

    @contextlib.contextmanager
    def _locked(self, alias: str) -> Iterator[None]:
        if is_remote(self.root):
            yield  # object stores: last writer wins; the history keeps every event
            return
        lock = Path(self._base, "aliases", f".{alias}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _release_path(self, release: str) -> str:
        return f"{self._base}/releases/{release}/release.json"

    def _alias_path(self, alias: str) -> str:
        return f"{self._base}/aliases/{alias}.json"

    def _history_path(self, alias: str, event_id: str) -> str:
        return f"{self._base}/history/{alias}/{event_id}.json"

    def _read_release(self, release: str, missing_ok: bool = False) -> Release | None:
        data = self._read_json(self._release_path(release), missing_ok=missing_ok)
        if data is None:
            return None
        try:
            return Release.model_validate(data)
        except ValidationError as e:
            raise RegistryError(f"release {release} in {self.root} is malformed: {e.errors()[0]['msg']}") from None

    def _read_json(self, path: str, missing_ok: bool = False) -> dict | None:
        try:
            with self.fs.open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            if missing_ok:
                return None
            raise RegistryError(f"{self._display(path)} does not exist in registry {self.root}") from None
        except json.JSONDecodeError as e:
            raise RegistryError(f"{self._display(path)} in registry {self.root} is not valid JSON ({e.msg})") from None

    def _write_json(self, path: str, obj: dict) -> None:
        data = (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
        if is_remote(self.root):
            self.fs.pipe_file(path, data)  # one object put: readers see the old or the new object, never a mix
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _display(self, path: str) -> str:
        return path.removeprefix(self._base).lstrip("/")

    @staticmethod
    def _check_alias(alias: str) -> str:
        if not _ALIAS.match(alias):
            raise RegistryError(
                f"invalid alias {alias!r}: lowercase letters, digits, '-' and '_', starting with a letter"
            )
        return alias

    @staticmethod
    def _check_release_id(release: str) -> str:
        if not _RELEASE.match(release):
            raise RegistryError(f"invalid release id {release!r}: expected r- followed by 16 hex digits")
        return release


def _now() -> str:
    # Microseconds: releases and events are listed in time order, and several can land within one second.
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def diff_releases(a: Release, b: Release) -> dict:
    """What changed from release `a` to release `b`: bound artifacts, metric deltas and config fields."""
    fields = ("index_version", "base_model", "adapter_version", "git_sha")
    changed = {f: (getattr(a, f), getattr(b, f)) for f in fields if getattr(a, f) != getattr(b, f)}
    if a.gates_label() != b.gates_label():
        changed["gates"] = (a.gates_label(), b.gates_label())
    metrics = {}
    for name in sorted(set(a.metrics) | set(b.metrics)):
        va, vb = a.metrics.get(name), b.metrics.get(name)
        delta = vb - va if va is not None and vb is not None else None
        if va != vb:
            metrics[name] = {"from": va, "to": vb, "delta": delta}
    fa, fb = _flatten(a.config), _flatten(b.config)
    config = {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    return {"from": a.release, "to": b.release, "changed": changed, "metrics": metrics, "config": config}


def _flatten(obj: object, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): canonical_json(obj) if isinstance(obj, list) else obj}
