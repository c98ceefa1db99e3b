"""The evaluation stages' outputs, one versioned pydantic schema each, written and read only through these models:

- `RetrievalEvalReport`: recall@k / MRR / nDCG per retrieval mode of an index (`reports/retrieval/*.json`);
- `RagEvalReport`: one model answering the eval set through the RAG chain (`evals/<index>/<label>-*/report.json`);
- `GateDecision`: the gates applied to the candidate against the production baseline (`decisions/*/decision.json`).

They live in `eval/` because eval writes them; tasks, decks and the CLI read them here. The release registry
(`llmops.release`) sits below eval and takes the few values it binds as plain arguments instead.
"""

from __future__ import annotations

import json
import tempfile
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from eval.gates import GateResult, GateVerdict
from llmops.records import validate_record
from llmops.errors import EvalDataError
from llmops.index.artifact import FusionSection
from llmops.storage import fetch_file

__all__ = [
    "EVAL_SCHEMA_VERSION",
    "ConversationSummary",
    "AnswerabilitySummary",
    "EvalLineage",
    "GateCounts",
    "GateDecision",
    "GuardrailSummary",
    "LatencySummary",
    "MetricRecord",
    "ModeScores",
    "ModelUnderTest",
    "RagEvalReport",
    "RetrievalEvalReport",
    "VerdictRecord",
    "load_eval_record",
]

# 2: the schemas of this module (typed retrieval report with the index's fusion section; typed verdict).
EVAL_SCHEMA_VERSION = 2

R = TypeVar("R", bound=BaseModel)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------------------------
# Retrieval evaluation
# ---------------------------------------------------------------------------------------------------------------


class ModeScores(_Record):
    """One retrieval mode on the held-out questions."""

    mode: str
    metrics: dict[str, float]
    questions: int
    unjudgeable: int  # questions with neither a gold document nor an answer string
    primary_metric: str
    greater_is_better: bool


class RetrievalEvalReport(_Record):
    schema_version: int = EVAL_SCHEMA_VERSION
    kind: Literal["retrieval_eval"] = "retrieval_eval"
    index_version: str
    status: str = "measured"  # "not measured: <why>" when there was no eval set
    questions: int = 0
    excluded_calibration_questions: int = 0
    follow_up_questions: int = 0  # conversational questions, searched as previous user message + follow-up
    excluded_unanswerable_questions: int = 0  # the documents do not answer them: no chunk is relevant
    primary_metric: str | None = None
    default_mode: str | None = None
    fusion: FusionSection | None = None  # the index's, as its manifest records it
    modes: dict[str, ModeScores] = {}
    worst_questions: list[dict] = []  # per-question rows of the default mode with no relevant hit in the top 10

    @property
    def default_scores(self) -> ModeScores | None:
        """The scores of the mode the index retrieves in by default (the first mode when it was not scored)."""
        if not self.modes:
            return None
        return self.modes.get(self.default_mode or "") or next(iter(self.modes.values()))


# ---------------------------------------------------------------------------------------------------------------
# RAG evaluation of one model
# ---------------------------------------------------------------------------------------------------------------


class ModelUnderTest(_Record):
    name: str  # as the client names it (the adapter's name when one is loaded)
    base: str
    adapter_version: str | None = None
    adapter_uri: str | None = None
    backend: str
    random_weights: bool = False  # a random test model: its answers are noise


class MetricRecord(_Record):
    value: float | None  # None: not measured (reason says why)
    higher_is_better: bool
    reason: str | None = None


class LatencySummary(_Record):
    p50_s: float | None = None
    p95_s: float | None = None
    retrieval_mean_s: float | None = None
    prompt_tokens_mean: float | None = None
    completion_tokens_mean: float | None = None


class ConversationSummary(_Record):
    """The follow-up questions of the eval set (conversational QA: a `history` of earlier turns), answered through
    the chat path like the rest; `metrics` are the main figures on them alone and, to compare, on the others."""

    questions: int  # questions with earlier turns
    turns_mean: float | None = None  # earlier turns (user and assistant messages) per follow-up
    rewrite: dict[str, int] = {}  # how their retrieval query was made: llm / concat / fallback (llmops.chat.rewrite)
    rewrite_mean_s: float | None = None  # time in the query rewrite per follow-up
    # multi_turn.<metric> and single_turn.<metric>: retrieval_hit_rate, then the mean of each per-sample answer metric
    metrics: dict[str, float | None] = {}
class GuardrailSummary(_Record):
    """The guardrails on the eval run: answers refused (content_filter; "not in the documents" is not counted) and
    the time the checks added per question (input and output)."""

    questions: int
    refusals: int
    refusal_rate: float | None
    by_policy: dict[str, int] = {}  # refusals per policy that fired
    added_p50_s: float | None = None
    added_p95_s: float | None = None


class EvalLineage(_Record):
    index_version: str
    adapter_version: str | None = None
    git_sha: str
    code_version: str
    execution_id: str | None = None
    libraries: dict[str, str] = {}


class AnswerabilitySummary(_Record):
    """The answerability check of an eval run: its threshold (the index manifest's) and what it refused."""

    enabled: bool
    threshold: float | None = None  # None when disabled
    threshold_from: str | None = None  # config | calibrated | fallback
    answerable_questions: int
    unanswerable_questions: int
    refused_answerable: int
    refused_unanswerable: int


class RagEvalReport(_Record):
    schema_version: int = EVAL_SCHEMA_VERSION
    kind: Literal["rag_eval"] = "rag_eval"
    label: str  # base | finetuned
    created_at: str
    model: ModelUnderTest
    index_version: str
    questions: int
    primary_metric: str  # samples are ranked worst-first by it
    metrics: dict[str, MetricRecord]
    latency: LatencySummary
    guardrails: GuardrailSummary | None = None  # None in reports written before guardrails existed
    seconds: float
    generation_seconds: float
    retrieval: RetrievalEvalReport | None = None
    conversations: ConversationSummary | None = None  # None in reports written before conversational QA
    # answer metrics score the answerable questions only; the unanswerable ones measure abstention
    answerability: AnswerabilitySummary | None = None  # None: a report from before answerability
    # evaluated questions that came from production (`llmops feedback merge`: provenance source "production");
    # None: a report from before production questions were counted
    production_questions: int | None = None
    config: dict  # the config the stage read (llmops.provenance.stage_inputs.config_record)
    lineage: EvalLineage
    samples: str | None = None  # the per-sample parquet beside report.json, once stored

    def metric_values(self) -> dict[str, float | None]:
        """{metric: value}, as gates compare them and releases record them."""
        return {name: m.value for name, m in self.metrics.items()}


# ---------------------------------------------------------------------------------------------------------------
# Gate decision
# ---------------------------------------------------------------------------------------------------------------


class GateCounts(_Record):
    passed: int
    failed: int
    skipped: int


class VerdictRecord(_Record):
    """A `GateVerdict` as stored: its gates, plus its counts and summary line for readers without eval's logic."""

    passed: bool
    summary: str
    counts: GateCounts
    gates: tuple[GateResult, ...]
    baseline_source: str | None

    @classmethod
    def of(cls, verdict: GateVerdict) -> "VerdictRecord":
        return cls(passed=verdict.passed, summary=verdict.summary(), counts=GateCounts(**verdict.counts()),
                   gates=verdict.gates, baseline_source=verdict.baseline_source)

    def to_verdict(self) -> GateVerdict:
        return GateVerdict(passed=self.passed, gates=self.gates, baseline_source=self.baseline_source)


class GateDecision(_Record):
    schema_version: int = EVAL_SCHEMA_VERSION
    kind: Literal["gate_decision"] = "gate_decision"
    created_at: str
    candidate: str  # the label of the report the gates were applied to
    candidate_model: ModelUnderTest
    index_version: str
    verdict: VerdictRecord
    on_missing_baseline: Literal["skip", "fail"]
    compared: dict[str, dict[str, float | None]]  # label -> {metric: value} of every model evaluated in the run
    baseline: dict[str, float | None] | None  # the production release's metrics, None without one


def load_eval_record(uri: str, model: type[R]) -> R:
    """A stored report.json / decision.json / retrieval report (artifact store or local path), validated."""
    what = model.__name__
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch_file(uri, tmp)
        if not path.is_file():
            raise EvalDataError(f"{what} {uri} does not exist")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{what} {uri} is not valid JSON ({e.msg})") from None
    return validate_record(
        raw, model, EVAL_SCHEMA_VERSION, where=f"{what} {uri}", what=what, error=EvalDataError,
        remedy="Re-run the evaluation with this version of llmops (or point gates.baseline_report at a report it wrote)",
    )
