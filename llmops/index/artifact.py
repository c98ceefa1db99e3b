"""Index artifacts: one immutable folder per version, described and verified by `manifest.json`.

The version is a digest of everything that determines the index (corpus content, chunking, embedding model files,
index and lexical parameters), so the same inputs give the same version and an existing version is reused, not
rebuilt. The manifest also lists the sha256 and size of every file; `verify_artifact` refuses a folder whose files
do not match (corrupted, truncated, or still being written).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Literal, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict

from llmops.config import LexicalConfig
from llmops.records import validate_record
from llmops.errors import ArtifactIntegrityError, ArtifactNotFoundError
from llmops.storage import file_checksums, is_remote, local_path, sha256_file

__all__ = [
    "MANIFEST_NAME",
    "AnswerabilitySection",
    "SCHEMA_VERSION",
    "ArtifactModel",
    "ChunkingSection",
    "CorpusSection",
    "EmbeddingSection",
    "FileEntry",
    "FusionSection",
    "IndexCounts",
    "IndexLineage",
    "IndexManifest",
    "RetrievalSection",
    "VectorIndexSection",
    "file_problems",
    "unlisted_files",
    "git_sha",
    "library_versions",
    "load_manifest",
    "materialize",
    "raise_if_unverified",
    "read_manifest",
    "verify_artifact",
]

MANIFEST_NAME = "manifest.json"
# 2: typed sections; the fusion section records whether its weight was tuned and on which calibration fraction.
SCHEMA_VERSION = 2

M = TypeVar("M", bound=BaseModel)

_LIBRARIES = (
    "flyte-llmops",
    "faiss-cpu",
    "faiss-gpu-cu12",
    "sentence-transformers",
    "transformers",
    "torch",
    "bm25s",
    "flytekit",
    "numpy",
)


class ArtifactModel(BaseModel):
    """Base of the artifact manifests' sections: unknown fields are refused and a read manifest cannot be changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(ArtifactModel):
    sha256: str
    bytes: int


class CorpusSection(ArtifactModel):
    fingerprint: str
    sources: list[str] = []


class ChunkingSection(ArtifactModel):
    max_tokens: int
    overlap_tokens: int
    tokenizer: str  # "embedding": chunks are measured in the embedding model's tokens


class EmbeddingSection(ArtifactModel):
    model: str
    revision: str | None = None
    model_digest: str
    profile: str = "custom"
    query_prefix: str
    passage_prefix: str
    dimension: int
    normalized: bool = True


class VectorIndexSection(ArtifactModel):
    type: str  # FAISS factory string
    metric: str
    params: dict  # search-time parameters (nprobe, efSearch) the index was built with
    built_on: str  # cpu | gpu


FusionChoice = Literal["config", "tuned", "default"]


class FusionSection(ArtifactModel):
    """How hybrid search fuses dense and lexical hits, with the dense weight resolved (never "auto")."""

    method: Literal["convex", "rrf"]
    dense_weight: float
    rrf_k: int = 60
    candidates: int = 100
    # config: the weight was set in the config; tuned: `dense_weight: auto` tuned it on the calibration split of the
    # eval set; default: `auto` with nothing to tune on, so 0.5.
    weight_from: FusionChoice = "config"
    calibration_fraction: float | None = None  # the share of eval questions tuned on (only when tuned)
    calibration_questions: int | None = None
    chosen_by: str = ""  # for display: how the weight was chosen, in words
    tuning_curve: dict[str, float] | None = None  # dense weight -> MRR@10 on the calibration questions

    @property
    def tuned(self) -> bool:
        return self.weight_from == "tuned"


class RetrievalSection(ArtifactModel):
    mode: Literal["dense", "lexical", "hybrid"]
    k: int
    fusion: FusionSection


ThresholdChoice = Literal["config", "calibrated", "fallback"]


class AnswerabilitySection(ArtifactModel):
    """The answerability threshold, resolved at index time (never "auto"): serving and evaluation read it here, so
    both refuse the same questions. A question is answerable when its best dense (cosine) match scores >= threshold."""

    threshold: float
    # config: set in the config; calibrated: `threshold: auto` on the eval set's calibration split; fallback: `auto`
    # with no answerable calibration question, so the config's fallback_threshold.
    threshold_from: ThresholdChoice
    target_answerable_recall: float | None = None  # calibrated: the share of answerable questions it must keep
    calibration_fraction: float | None = None  # calibrated: the share of eval questions it was calibrated on
    answerable_questions: int = 0  # calibration questions of each kind
    unanswerable_questions: int = 0
    answerable_kept: float | None = None  # on the calibration questions: the share of answerable ones it keeps
    unanswerable_rejected: float | None = None  # ... and of unanswerable ones it rejects (None without any)
    chosen_by: str = ""  # for display: how the threshold was chosen, in words

    @property
    def calibrated(self) -> bool:
        return self.threshold_from == "calibrated"


class IndexCounts(ArtifactModel):
    documents: int | None = None
    chunks: int
    vectors: int
    skipped: int = 0
    duplicates: int = 0


class IndexLineage(ArtifactModel):
    git_sha: str | None = None
    code_version: str | None = None
    config_digest: str | None = None
    flyte_execution_id: str | None = None
    qa: str | None = None  # the eval set's URI (fusion was tuned on its calibration split)


class IndexManifest(ArtifactModel):
    schema_version: int
    kind: Literal["index"] = "index"
    version: str
    created_at: str
    corpus: CorpusSection
    chunking: ChunkingSection
    embedding: EmbeddingSection
    index: VectorIndexSection
    lexical: LexicalConfig | None  # None when disabled
    retrieval: RetrievalSection
    counts: IndexCounts
    files: dict[str, FileEntry]
    libraries: dict[str, str]
    lineage: IndexLineage
    answerability: AnswerabilitySection | None = None  # None: built before answerability thresholds existed

    @property
    def calibration_fraction(self) -> float | None:
        """The share of the eval set (`split_calibration`) that index-time tuning used, fusion weight or answerability
        threshold (both use the same split); None when nothing was tuned. Evaluation never scores those questions."""
        if self.retrieval.fusion.tuned:
            return self.retrieval.fusion.calibration_fraction
        if self.answerability is not None and self.answerability.calibrated:
            return self.answerability.calibration_fraction
        return None


def library_versions(*extra: str, names: Sequence[str] = _LIBRARIES) -> dict[str, str]:
    """Installed versions of `names` (by default the libraries an index artifact depends on) and `extra`; a package
    that is not installed is left out."""
    out = {}
    for name in (*names, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_sha() -> str:
    """The code version: $LLMOPS_GIT_SHA (set in images and CI), else the checkout's HEAD with `-dirty` appended
    when tracked files differ from it (as `git describe --dirty` does), else 'unknown'."""
    if sha := os.environ.get("LLMOPS_GIT_SHA"):
        return sha
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here)
        sha = head.stdout.strip()
        if not sha:
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, cwd=here,
        )
        return f"{sha}-dirty" if status.returncode != 0 or status.stdout.strip() else sha
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_entries(directory: Path) -> dict[str, FileEntry]:
    return {
        name: FileEntry(sha256=digest, bytes=(directory / name).stat().st_size)
        for name, digest in file_checksums(directory, exclude=(MANIFEST_NAME,)).items()
    }


def load_manifest(
    directory: Path, name: str, schema_version: int, model: type[M], what: str, remedy: str,
    sha256: str | None = None,
) -> M:
    """Read and validate `directory/name`; `what` names the artifact kind in errors, `remedy` says how to make one.
    Index and adapter artifacts share this, so both refuse missing, unreadable and foreign manifests alike.

    `sha256`: the digest a release pinned for this manifest. The bytes checked are the bytes parsed, so a manifest
    rewritten together with the files it lists is refused."""
    if not directory.is_dir():
        raise ArtifactNotFoundError(f"{what} {directory} does not exist ({remedy})")
    path = directory / name
    if not path.is_file():
        raise ArtifactIntegrityError(f"{what} {directory} is incomplete: no {name} (an interrupted run?); {remedy}")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactIntegrityError(
            f"{path} is not the manifest the release pinned (sha256 {hashlib.sha256(data).hexdigest()[:16]}..., "
            f"pinned {sha256[:16]}...): the artifact changed after it was released. Restore it, or release the "
            "artifact as it is now; never edit an artifact in place."
        )
    try:
        raw = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactIntegrityError(f"{path} is not valid JSON: {e}") from None
    return validate_record(
        raw, model, schema_version, where=str(path), what=f"{what} manifest",
        remedy=f"{remedy[0].upper()}{remedy[1:]} with this version of llmops", error=ArtifactIntegrityError,
    )


def file_problems(directory: Path, files: dict[str, FileEntry]) -> list[str]:
    """What is wrong with the files a manifest lists: missing, another size, another sha256."""
    problems = []
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != entry.bytes:
            problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {entry.bytes}")
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{name}: sha256 mismatch (file changed after the artifact was written)")
    return problems


def unlisted_files(directory: Path, files: dict[str, FileEntry], manifest_name: str) -> list[str]:
    """Files in `directory` that its manifest does not list (hidden ones aside, as when the artifact was written):
    a reader that loads files by convention (vLLM, peft) would load an added one unverified."""
    present = (p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    names = {p.as_posix() for p in present if not any(part.startswith(".") for part in p.parts)}
    return [f"{name}: not in the manifest (added after the artifact was written)"
            for name in sorted(names - set(files) - {manifest_name})]


def read_manifest(directory: str | os.PathLike, sha256: str | None = None) -> IndexManifest:
    return load_manifest(Path(directory), MANIFEST_NAME, SCHEMA_VERSION, IndexManifest, "index artifact",
                         "build one with index_corpus", sha256=sha256)


def verify_artifact(directory: str | os.PathLike, manifest_sha256: str | None = None) -> IndexManifest:
    """Check every file listed in the manifest exists with the recorded size and sha256, and nothing is missing;
    with `manifest_sha256` (a release's pin), also that the manifest itself is the one released."""
    directory = Path(directory)
    manifest = read_manifest(directory, manifest_sha256)
    raise_if_unverified(directory, manifest, "index artifact", file_problems(directory, manifest.files), "Rebuild it")
    return manifest


def raise_if_unverified(directory: Path, manifest, kind: str, problems: Sequence[str], remedy: str) -> None:
    """ArtifactIntegrityError listing `problems` (none: returns) for the `kind` artifact at `directory`, ending with
    `remedy` (how to get a good one)."""
    if problems:
        raise ArtifactIntegrityError(
            f"{kind} {directory} (version {manifest.version}) failed verification:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\n{remedy}; never edit an artifact in place."
        )


def materialize(uri: str, cache_dir: str | None = None) -> Path:
    """A local folder holding the artifact at `uri` (object-store artifacts are downloaded once per version)."""
    if not is_remote(uri):
        return local_path(uri)
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(uri)
    local = Path(cache_dir or Path(tempfile.gettempdir(), "llmops-artifacts")) / Path(path).name
    if not (local / MANIFEST_NAME).exists():
        staged = local.with_name(f"{local.name}.{uuid.uuid4().hex}.partial")
        fs.get(path.rstrip("/") + "/", str(staged), recursive=True)
        try:
            staged.rename(local)
        except OSError:  # another process downloaded it first
            shutil.rmtree(staged, ignore_errors=True)
    return local
