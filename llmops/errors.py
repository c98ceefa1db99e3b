"""One error vocabulary for tasks, eval and serving.

Every message says what is wrong and, where there is one, how to fix it. Library code raises these; only the CLI
turns them into exit codes.
"""

from __future__ import annotations

__all__ = [
    "LLMOpsError",
    "ConfigError",
    "IngestError",
    "ChunkingError",
    "EmbeddingError",
    "IndexBuildError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "EvalDataError",
    "RegistryError",
    "FinetuneError",
]


class LLMOpsError(Exception):
    """Base class: anything the pipeline reports to a user on purpose."""


class ConfigError(LLMOpsError):
    """A configuration file is invalid. `problems` lists every problem found, not just the first."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration {source}:\n{lines}")


class IngestError(LLMOpsError):
    """Nothing usable could be ingested, or a source cannot be read at all."""


class ChunkingError(LLMOpsError):
    """Chunking parameters do not fit the embedding model."""


class EmbeddingError(LLMOpsError):
    """The embedding model cannot be resolved or loaded."""


class IndexBuildError(LLMOpsError):
    """The vector or lexical index cannot be built from the given inputs."""


class ArtifactNotFoundError(LLMOpsError):
    """An artifact directory or one of its required files does not exist."""


class ArtifactIntegrityError(LLMOpsError):
    """An artifact is corrupted or incomplete: a checksum, size or required file does not match its manifest."""


class EvalDataError(LLMOpsError):
    """An evaluation set is malformed (names the file and the record at fault)."""


class RegistryError(LLMOpsError):
    """A release or alias is missing or malformed, or a promotion is not allowed."""


class FinetuneError(LLMOpsError):
    """LoRA fine-tuning cannot run as configured (training data, base model, rank, quantization, hardware)."""
