"""What each cached stage reads, and the cache key made of it.

Flyte serves a cached task when its inputs match. Between tasks the inputs are content-addressed URIs, but a stage
also reads config fields, files the config names by path (training data, local models), code and libraries, none
of which a path or a whole-config string captures. So each cached stage declares here which config fields it reads
and which modules it runs; `stage_key` digests exactly those (the files by content), and `resolve_config`, which is
never cached, computes every stage's key before any cached task runs.

Each task reads its config through `stage_config`, a copy in which every undeclared field raises
`UndeclaredConfigRead`: a stage cannot read a field its key does not cover (the mutation-matrix test runs every
stage this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from llmops.provenance.code_version import code_closure
from llmops.config import PipelineConfig
from llmops.provenance.content_digest import ref_digest
from llmops.errors import LLMOpsError
from llmops.storage import digest_of

__all__ = [
    "KEY_SCHEMA",
    "STAGES",
    "Stage",
    "UndeclaredConfigRead",
    "config_record",
    "stage_code",
    "stage_config",
    "stage_key",
    "stage_keys",
]

# Bump when the key's make-up changes, so keys of different schemes never meet.
KEY_SCHEMA = "stage-key-1"


@dataclass(frozen=True)
class Stage:
    reads: tuple[str, ...]  # config fields (dotted paths; a section means all of it)
    modules: tuple[str, ...]  # entry modules of the code the stage runs (their imports follow)


# Every stage writes under artifacts.root, so the root is part of what it produces. The Deck code in tasks/ is not
# here: editing a Deck re-runs no stage.
_OUT = ("artifacts",)
_RETRIEVER = ("retrieval",)  # retrieval defaults applied to the loaded index
_GENERATION = ("llm", "sampling", "prompt")  # the model, its decoding and the prompt template/budget
# the index stage resolves the answerability threshold (calibrated or not) into the manifest; serving and eval read
# it there, and read only `enabled` and `messages` from the config
_ANSWERABILITY_THRESHOLD = (
    "answerability.threshold", "answerability.target_answerable_recall", "answerability.fallback_threshold"
)
STAGES: dict[str, Stage] = {
    # the chunk task loads the embedding model (llmops.index.embedding) for its tokenizer and digest
    "chunk": Stage((*_OUT, "chunking", "embedding"), ("llmops.corpus.stages", "llmops.index.embedding")),
    "plan_shards": Stage((*_OUT, "embedding.shard_size"), ("llmops.index.build",)),
    "embed": Stage((*_OUT, "embedding"), ("llmops.index.build",)),
    "index": Stage(
        (*_OUT, "corpus", "chunking", "embedding", "index", "lexical", "retrieval", "eval.calibration_fraction",
         "eval.ks", "eval.max_questions", *_ANSWERABILITY_THRESHOLD),
        ("llmops.index.build",),
    ),
    # retrieval_eval and evaluate leave out the calibration questions the index tuned on (fusion weight, answerability
    # threshold); they
    # take the share from the index's manifest, not from eval.calibration_fraction (which the index version covers).
    "retrieval_eval": Stage((*_OUT, *_RETRIEVER, "eval.ks", "eval.max_questions"), ("eval.retrieval",)),
    # eval.qa_path: training questions that are also eval questions are refused (no leak into the eval set).
    "finetune": Stage(
        (*_OUT, *_RETRIEVER, *_GENERATION, "finetune", "eval.qa_path", "chat.max_history_turns",
         "chat.history_budget_fraction"), ("llmops.finetune.stage",)),
    "evaluate": Stage(
        (*_OUT, *_RETRIEVER, *_GENERATION, "chat", "guardrails", "answerability", "eval.max_samples", "eval.metrics"),
        ("eval.stage",),
    ),
}


class UndeclaredConfigRead(LLMOpsError):
    """A stage read a config field that its cache key does not cover (a bug in STAGES, not in the config)."""


class _Undeclared:
    """Stands in for a config field that the stage did not declare: any use of it raises."""

    __slots__ = ("_field",)

    def __init__(self, field: str):
        object.__setattr__(self, "_field", field)

    def _fail(self, *_: Any, **__: Any):
        raise UndeclaredConfigRead(
            f"this stage read config field {object.__getattribute__(self, '_field')!r}, which its cache key does "
            "not cover: add it to the stage's `reads` in llmops/provenance/stage_inputs.py"
        )

    def __getattr__(self, name: str):
        self._fail()

    __bool__ = __iter__ = __len__ = __eq__ = __hash__ = __str__ = __int__ = __float__ = __getitem__ = _fail

    def __repr__(self) -> str:
        return f"<undeclared {object.__getattribute__(self, '_field')}>"


def _tree(paths: tuple[str, ...]) -> dict:
    tree: dict = {}
    for path in paths:
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if node is True:
                break
        else:
            node[leaf] = True
    return tree


def _project(model: BaseModel, tree: dict, where: str) -> BaseModel:
    values = {}
    for name in type(model).model_fields:
        sub, value = tree.get(name), getattr(model, name)
        if sub is True:
            values[name] = value
        elif isinstance(sub, dict) and isinstance(value, BaseModel):
            values[name] = _project(value, sub, f"{where}{name}.")
        elif isinstance(sub, dict):  # a section that is None (e.g. no llm): nothing below it to read
            values[name] = value
        else:
            values[name] = _Undeclared(where + name)
    return type(model).model_construct(_fields_set=model.model_fields_set, **values)


def stage_config(cfg: PipelineConfig, stage: str) -> PipelineConfig:
    """`cfg` as `stage` may see it: the fields in its `reads`, every other field raising UndeclaredConfigRead."""
    return _project(cfg, _tree(STAGES[stage].reads), "")  # type: ignore[return-value]


def _undeclared(model: BaseModel) -> dict:
    out: dict = {}
    for name in type(model).model_fields:
        value = model.__dict__.get(name)
        if isinstance(value, _Undeclared):
            out[name] = True
        elif isinstance(value, BaseModel) and (sub := _undeclared(value)):
            out[name] = sub
    return out


def config_record(cfg: PipelineConfig) -> dict:
    """The config as JSON for an artifact or report: for a stage's config, only what the stage read."""
    return cfg.model_dump(mode="json", exclude=_undeclared(cfg) or None)


def _content(model: BaseModel, where: str) -> dict[str, str | None]:
    """Digests of every field marked as naming content (`json_schema_extra={"content": True}`) in `model`."""
    out: dict[str, str | None] = {}
    for name, field in type(model).model_fields.items():
        value = model.__dict__.get(name)
        if isinstance(value, _Undeclared):
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("content") and (value is None or isinstance(value, str)):
            revision = model.__dict__.get("revision") if "revision" in type(model).model_fields else None
            out[where + name] = ref_digest(value, field=where + name, revision=revision)
        elif isinstance(value, BaseModel):
            out.update(_content(value, f"{where}{name}."))
        elif isinstance(value, tuple) and value and all(isinstance(v, BaseModel) for v in value):
            for i, item in enumerate(value):
                out.update(_content(item, f"{where}{name}.{i}."))
    return out


def stage_code(stage: str):
    """The code closure (files and library versions) that `stage` runs."""
    return code_closure(STAGES[stage].modules)


def stage_key(cfg: PipelineConfig, stage: str) -> str:
    """Digest of everything `stage` reads besides its task inputs: its config fields, the content of the files and
    models they name, its code and the versions of the libraries that code imports."""
    view = stage_config(cfg, stage)
    code = stage_code(stage)
    return digest_of(
        {
            "schema": KEY_SCHEMA,
            "stage": stage,
            "config": config_record(view),
            "content": _content(view, ""),
            "code": code.digest,
            "libraries": code.libraries,
        }
    )


def stage_keys(cfg: PipelineConfig) -> dict[str, str]:
    """Every cached stage's key for this config (the stages the config leaves off get one too; it is unused)."""
    return {stage: stage_key(cfg, stage) for stage in STAGES}
