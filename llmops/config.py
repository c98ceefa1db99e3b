"""Typed pipeline configuration: the one source of defaults.

Every YAML file in `configs/` validates against `PipelineConfig`. Unknown keys are errors (a typo must not pass
silently), and every problem in a file is reported at once, each naming its field and, for choices, the allowed
values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops.errors import ConfigError

__all__ = [
    "ArtifactsConfig",
    "ChunkingConfig",
    "CorpusConfig",
    "DirectorySource",
    "EmbeddingConfig",
    "FusionConfig",
    "HFDatasetSource",
    "IndexConfig",
    "JsonlSource",
    "LexicalConfig",
    "PipelineConfig",
    "RetrievalConfig",
    "RetrievalEvalConfig",
    "SquadSource",
    "load_config",
    "parse_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------------------------
# Corpus sources. `path` is a local path (relative paths resolve against the working directory) or an fsspec URI.
# ---------------------------------------------------------------------------------------------------------------


class DirectorySource(_Strict):
    """A folder of .txt, .md, .html and .pdf files, read recursively."""

    kind: Literal["directory"]
    path: str
    include: tuple[str, ...] = Field(default=("**/*",), description="glob patterns, relative to `path`")
    max_file_bytes: int = Field(default=50_000_000, gt=0, description="larger files are skipped and reported")


class JsonlSource(_Strict):
    """One JSON object per line with a text field; every other field becomes document metadata."""

    kind: Literal["jsonl"]
    path: str
    text_field: str = "text"
    title_field: str | None = "title"
    id_field: str | None = Field(default=None, description="kept as metadata `source_id`; ids are content hashes")


class SquadSource(_Strict):
    """SQuAD-format JSON: contexts become documents, questions become an evaluation set."""

    kind: Literal["squad"]
    path: str
    strip_title_prefix: bool = Field(
        default=False, description="drop a leading 'TITLE [SEP] ' from contexts (JSQuAD)"
    )


class HFDatasetSource(_Strict):
    """A Hugging Face `datasets` dataset: a local `save_to_disk` folder, data files, or a Hub id when online."""

    kind: Literal["hf_dataset"]
    path: str
    split: str = "train"
    text_field: str = "text"
    title_field: str | None = "title"


Source = Annotated[
    Union[DirectorySource, JsonlSource, SquadSource, HFDatasetSource], Field(discriminator="kind")
]


class CorpusConfig(_Strict):
    sources: tuple[Source, ...] = Field(min_length=1)
    min_chars: int = Field(default=1, ge=1, description="documents with fewer non-space characters are skipped")


class ChunkingConfig(_Strict):
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="tokens per chunk (embedding tokenizer); None = the model's max sequence length. "
        "Never exceeds what the model can embed.",
    )
    overlap_tokens: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "ChunkingConfig":
        if self.max_tokens is not None and self.overlap_tokens >= self.max_tokens:
            raise ValueError(
                f"overlap_tokens ({self.overlap_tokens}) must be smaller than max_tokens ({self.max_tokens})"
            )
        return self


EmbeddingProfileName = Literal["auto", "none", "e5", "e5-instruct", "bge-en", "bge-zh", "custom"]


class EmbeddingConfig(_Strict):
    model: str = Field(
        description="Hugging Face id, local path, or `pkg:MODULE` for a model shipped inside a Python package"
    )
    revision: str | None = Field(default=None, description="Hub revision (commit sha) for reproducible runs")
    profile: EmbeddingProfileName = Field(
        default="auto", description="query/passage prefixes; `auto` picks from the model name"
    )
    query_prefix: str | None = Field(default=None, description="only with profile: custom")
    passage_prefix: str | None = Field(default=None, description="only with profile: custom")
    batch_size: int = Field(default=32, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    shard_size: int = Field(default=4096, gt=0, description="chunks per embedding shard (one map_task item)")
    max_concurrency: int = Field(default=4, gt=0, description="embedding shards running at once on a cluster")
    cache: bool = Field(default=True, description="reuse embeddings by (model digest, chunk text)")

    @model_validator(mode="after")
    def _custom_prefixes(self) -> "EmbeddingConfig":
        has_prefix = self.query_prefix is not None or self.passage_prefix is not None
        if self.profile == "custom" and not has_prefix:
            raise ValueError("profile: custom needs query_prefix and/or passage_prefix")
        if self.profile != "custom" and has_prefix:
            raise ValueError("query_prefix/passage_prefix are only used with profile: custom")
        return self


class IndexConfig(_Strict):
    type: str = Field(
        default="auto",
        description="`auto` (from the vector count), or a FAISS index_factory string such as Flat, HNSW32, "
        "IVF1024,Flat",
    )
    flat_max_vectors: int = Field(
        default=100_000, gt=0, description="auto: exact Flat search up to this many vectors"
    )
    ivf_min_vectors: int = Field(
        default=1_000_000, gt=0, description="auto: IVF from this many vectors, HNSW in between"
    )
    hnsw_m: int = Field(default=32, ge=4, le=128)
    hnsw_ef_construction: int = Field(default=200, gt=0)
    hnsw_ef_search: int = Field(default=128, gt=0)
    ivf_nprobe: int = Field(default=32, gt=0)
    use_gpu: Literal["auto", "never"] = Field(
        default="auto", description="build on GPU when faiss-gpu and a GPU are present"
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "IndexConfig":
        if self.ivf_min_vectors <= self.flat_max_vectors:
            raise ValueError("ivf_min_vectors must be greater than flat_max_vectors")
        return self


class LexicalConfig(_Strict):
    enabled: bool = True
    tokenizer: Literal["auto", "word", "mecab", "bigram"] = Field(
        default="auto", description="auto: words for Latin script, MeCab for Japanese, bigrams for other CJK"
    )
    k1: float = Field(default=1.5, gt=0)
    b: float = Field(default=0.75, ge=0, le=1)


class FusionConfig(_Strict):
    method: Literal["convex", "rrf"] = "convex"
    dense_weight: float | Literal["auto"] = Field(
        default="auto",
        description="convex: weight of the dense score (lexical gets 1 - w); `auto` tunes it on the eval set's "
        "calibration split at index time",
    )
    rrf_k: int = Field(default=60, gt=0)
    candidates: int = Field(default=100, gt=0, description="hits taken from each retriever before fusing")

    @model_validator(mode="after")
    def _weight_range(self) -> "FusionConfig":
        if isinstance(self.dense_weight, float) and not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError("dense_weight must be between 0 and 1, or 'auto'")
        return self


class RetrievalConfig(_Strict):
    mode: Literal["dense", "lexical", "hybrid"] = "hybrid"
    k: int = Field(default=5, gt=0, le=100)
    fusion: FusionConfig = FusionConfig()


class RetrievalEvalConfig(_Strict):
    qa_path: str | None = Field(
        default=None, description="extra SQuAD JSON or JSONL (question, answers) eval set; squad sources add theirs"
    )
    ks: tuple[int, ...] = (1, 5, 10)
    max_questions: int | None = Field(default=None, gt=0, description="evaluate a deterministic sample")
    calibration_fraction: float = Field(
        default=0.3, gt=0, lt=1, description="share of questions used to tune fusion (never scored)"
    )


class ArtifactsConfig(_Strict):
    root: str = Field(
        default="artifacts",
        description="artifact store: local path or s3:// / gs:// URI; indexes, embedding cache and reports",
    )


class PipelineConfig(_Strict):
    corpus: CorpusConfig
    chunking: ChunkingConfig = ChunkingConfig()
    embedding: EmbeddingConfig
    index: IndexConfig = IndexConfig()
    lexical: LexicalConfig = LexicalConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    eval: RetrievalEvalConfig = RetrievalEvalConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()

    @model_validator(mode="after")
    def _hybrid_needs_lexical(self) -> "PipelineConfig":
        if self.retrieval.mode in ("lexical", "hybrid") and not self.lexical.enabled:
            raise ValueError(f"retrieval.mode {self.retrieval.mode!r} needs lexical.enabled: true")
        return self

    def resolved(self, base_dir: str | os.PathLike | None = None) -> "PipelineConfig":
        """Return a copy with local paths made absolute, so the config means the same thing in every task."""
        base = Path(base_dir or os.getcwd())

        def absolute(p: str | None) -> str | None:
            if p is None or "://" in p or p.startswith("pkg:"):
                return p
            return str((base / p).resolve()) if not Path(p).is_absolute() else p

        def source_path(s) -> str:
            # A Hugging Face dataset path is a Hub id unless such a local path exists.
            if s.kind == "hf_dataset" and not (base / s.path).exists():
                return s.path
            return absolute(s.path)

        sources = tuple(s.model_copy(update={"path": source_path(s)}) for s in self.corpus.sources)
        model = self.embedding.model
        if model.startswith((".", "/")) or (base / model).exists():
            model = absolute(model)
        return self.model_copy(
            update={
                "corpus": self.corpus.model_copy(update={"sources": sources}),
                "embedding": self.embedding.model_copy(update={"model": model}),
                "eval": self.eval.model_copy(update={"qa_path": absolute(self.eval.qa_path)}),
                "artifacts": self.artifacts.model_copy(update={"root": absolute(self.artifacts.root)}),
            }
        )


def _format_error(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _SOURCE_TAGS)) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see llmops/config.py for the schema)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown source kind {err['input'].get('kind')!r}; allowed: {', '.join(sorted(_SOURCE_TAGS))}"
    return f"{where}: {msg}"


_SOURCE_TAGS = {"directory", "jsonl", "squad", "hf_dataset"}


def parse_config(data: object, source: str = "<config>") -> PipelineConfig:
    """Validate a mapping; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a mapping at the top level, got {type(data).__name__}"])
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_format_error(err) for err in e.errors()]) from None


def load_config(path: str | os.PathLike) -> PipelineConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["file not found (configs/quickstart.yaml is a working example)"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [f"not valid YAML: {e}"]) from None
    return parse_config(data, source=str(path))
