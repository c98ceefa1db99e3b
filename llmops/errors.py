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
    "InvalidRequestError",
    "ContextLengthError",
    "ModelNotFoundError",
    "AuthenticationError",
    "BackendUnavailableError",
    "NotReadyError",
    "GenerationError",
    "VLLMServerError",
    "NotFoundError",
    "StoreUnavailableError",
    "TrackingError",
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


# Requests (the RAG API maps each of these to one HTTP status in serving/errors.py).


class InvalidRequestError(LLMOpsError):
    """A client request is invalid. `param` names the request field at fault; `code` is a machine-readable reason."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        self.param = param
        self.code = code
        super().__init__(message)


class ContextLengthError(InvalidRequestError):
    """The prompt plus the requested completion does not fit the model's context window."""

    def __init__(self, message: str, param: str | None = "messages"):
        super().__init__(message, param=param, code="context_length_exceeded")


class ModelNotFoundError(LLMOpsError):
    """A request names a model this server does not serve."""

    def __init__(self, message: str, param: str | None = "model"):
        self.param = param
        super().__init__(message)


class AuthenticationError(LLMOpsError):
    """An admin request has no valid token, or admin endpoints are disabled."""


class BackendUnavailableError(LLMOpsError):
    """The generation backend (the vLLM server) cannot be reached or failed; retrying later may succeed."""


class NotReadyError(LLMOpsError):
    """The server has no release loaded yet (or the alias points at nothing)."""


# Generation (llmops/llm/client.py, llmops/llm/vllm_server.py). A backend that cannot be reached raises
# BackendUnavailableError; an unknown model name ModelNotFoundError; a prompt over the context ContextLengthError.


class GenerationError(LLMOpsError):
    """The LLM backend rejected a request for another reason (bad parameters, a LoRA adapter it cannot load).

    `status_code` is the backend's HTTP status when there is one."""

    def __init__(self, message: str, status_code: int | None = None):
        self.status_code = status_code
        super().__init__(message)


class VLLMServerError(LLMOpsError):
    """A vLLM server cannot be started (no vLLM interpreter, bad arguments, crash at start-up, not ready in time)."""


# Stored conversations and feedback (serving/sessions/).


class NotFoundError(LLMOpsError):
    """A stored thing the caller asked for does not exist for them: missing, expired or another key's (one answer
    for all three, so nothing leaks). `code` is machine-readable (`session_not_found`), `param` the request field."""

    def __init__(self, message: str, param: str | None = None, code: str = "not_found"):
        self.param = param
        self.code = code
        super().__init__(message)


class StoreUnavailableError(LLMOpsError):
    """The session store is switched off, cannot be reached or failed; the message (paths, URLs) is internal."""


class TrackingError(LLMOpsError):
    """A run could not be logged to the tracking server (MLflow) and `tracking.required` is set."""
