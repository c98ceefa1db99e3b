"""The monitor run: a window of the request log measured against the release it is compared with.

    request log window (llmops.requestlog) -> trends, drift, gaps, judge (llmops.monitor) -> MonitorReport

The reference is the release behind `monitoring.monitor.alias` (default: `serving.alias`): its eval run's per-question
relevance scores (samples.parquet) are the drift reference, its index embeds the gap questions and gives the
low-relevance threshold (its answerability threshold) and the chunk texts the RAGAS judge checks answers against.
Without a release, the monitor still reports traffic, latency, refusals and feedback; drift and the judge are then
not measured, and gaps are embedded with the config's embedding model. The judge is eval's RAGAS judge path, so this
module sits in eval, above llmops.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from eval.metrics.base import EvalSample
from eval.metrics.ragas_metrics import RagasMetric
from eval.runner import read_samples
from llmops.config import PipelineConfig
from llmops.errors import ConfigError, EvalDataError
from llmops.index.embedding import get_embedder, resolve_profile
from llmops.index.retriever import Retriever
from llmops.monitor.drift import retrieval_drift
from llmops.monitor.gaps import Gaps, find_gaps
from llmops.monitor.judge import JUDGE_METRICS, JudgedAnswer, JudgeResult, judge_sample
from llmops.monitor.report import LogSummary, MonitorReport, MonitorWindow
from llmops.monitor.trends import DAY_S, compute_trends
from llmops.release.registry import Release, ReleaseRegistry
from llmops.requestlog.reader import read_window, unread_note
from llmops.requestlog.record import RequestRecord
from llmops.storage import fetch_file, is_remote

__all__ = ["judge_requests", "reference_relevance", "run_monitor"]


def run_monitor(
    cfg: PipelineConfig, *, window_end: float | None = None, days: float | None = None, whole_days: bool = False
) -> MonitorReport:
    """The report of the `days` (default `monitoring.monitor.window_days`) ending at `window_end` (default now), or
    with `whole_days` at the UTC midnight before it: the log is partitioned by UTC day, so the files of days that
    have ended are closed, and consecutive daily runs cover every record once."""
    mon = cfg.monitoring.monitor
    root = cfg.monitoring.request_log.path
    if root is None:
        raise ConfigError("monitoring.request_log.path", [
            "the monitor reads the request log, and none is configured: set monitoring.request_log.path to the "
            "folder or s3:// URI serving writes it to"])
    now = time.time()
    end = now if window_end is None else float(window_end)
    if whole_days:
        end -= end % DAY_S
    span = (days if days is not None else mon.window_days) * DAY_S
    window = read_window(root, end - span, end)
    alias = mon.alias or cfg.serving.alias
    release = ReleaseRegistry(cfg.artifacts.registry_root).resolve(alias)
    retriever = Retriever.load(release.index_uri) if release is not None else None

    reference, reference_reason = (None, f"no release behind alias {alias!r} to compare with") if release is None \
        else reference_relevance(release)
    drift = retrieval_drift(
        [r.relevance for r in window.requests if r.relevance is not None], reference, mon.drift,
        reference_source=release.eval_report_uri if release else None, missing_reference=reference_reason or "",
    )
    return MonitorReport(
        created_at=now,
        window=MonitorWindow(start=window.start, end=window.end, days=span / DAY_S),
        log=LogSummary(files=window.files, skipped_lines=window.skipped_lines, skip_reasons=window.skip_reasons,
                       open_files=window.open_files, note=unread_note(window, root)),
        release=release.release if release else None,
        alias=alias,
        index_version=retriever.version if retriever else None,
        trends=compute_trends(window),
        drift=drift,
        gaps=_gaps(cfg, window.requests, retriever),
        judge=judge_requests(cfg, window.requests, retriever),
    )


def reference_relevance(release: Release) -> tuple[list[float] | None, str | None]:
    """The release's eval questions' relevance scores (beside its report.json), or None and why not."""
    samples_uri = _beside(release.eval_report_uri, "samples.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = fetch_file(samples_uri, tmp)
            samples = read_samples(path)
        except (OSError, EvalDataError) as e:
            return None, f"the eval samples of release {release.release} cannot be read ({type(e).__name__})"
    scores = [s.relevance for s in samples if s.relevance is not None]
    if not scores:
        return None, (f"release {release.release}'s eval run stored no relevance scores (evaluated before they were "
                      "kept): run llmops_pipeline again to evaluate with them")
    return scores, None


def judge_requests(cfg: PipelineConfig, requests: list[RequestRecord], retriever: Retriever | None) -> JudgeResult:
    """Eval's RAGAS faithfulness and answer relevancy on a seeded sample of the window's answered requests, their
    contexts read back from the reference index by chunk id (the log keeps ids, not texts)."""
    judge = cfg.eval.metrics.ragas.judge
    size = cfg.monitoring.monitor.judge_sample_size
    if judge is None or size == 0:
        return JudgeResult(configured=False, reason="not configured: set eval.metrics.ragas.judge (and "
                                                    "monitoring.monitor.judge_sample_size > 0) to score answers")
    if retriever is None:
        return JudgeResult(configured=True, judge_model=judge.model,
                           reason="no reference release: its index holds the contexts the answers are checked against")
    texts = dict(zip(retriever.chunk_column("chunk_id"), retriever.chunk_column("text")))
    eligible = [r for r in requests if r.refusal_kind is None and r.sources and r.answer.strip()
                and r.index_version == retriever.version and all(s.chunk_id in texts for s in r.sources)]
    sample = judge_sample(eligible, size, cfg.monitoring.monitor.sample_seed)
    if not sample:
        return JudgeResult(configured=True, judge_model=judge.model, eligible=0,
                           reason=f"no answered request with sources from index {retriever.version} in the window")
    samples = [EvalSample(qid=r.response_id, question=r.question, answer=r.answer, references=(),
                          contexts=tuple(texts[s.chunk_id] for s in r.sources), lang=r.lang) for r in sample]
    metric = RagasMetric(cfg.eval.metrics.ragas, retriever.manifest.embedding.model)
    values = {key: value for key, value in metric.compute(samples).items() if key in JUDGE_METRICS}
    return JudgeResult(
        configured=True,
        judge_model=judge.model,
        sampled=len(sample),
        eligible=len(eligible),
        metrics={key: values[key].value for key in JUDGE_METRICS},
        reasons={key: values[key].reason for key in JUDGE_METRICS if values[key].reason},
        answers=[
            JudgedAnswer(response_id=r.response_id, question=r.question, answer=r.answer,
                         scores={key: (values[key].per_sample or [None] * len(sample))[i] for key in JUDGE_METRICS})
            for i, r in enumerate(sample)
        ],
    )


def _gaps(cfg: PipelineConfig, requests: list[RequestRecord], retriever: Retriever | None) -> Gaps:
    mon = cfg.monitoring.monitor
    section = retriever.manifest.answerability if retriever else None
    if mon.low_relevance_threshold is not None:
        threshold, source = mon.low_relevance_threshold, "config"
    elif section is not None:
        threshold, source = section.threshold, f"index {retriever.version} answerability threshold"
    else:
        threshold, source = cfg.answerability.fallback_threshold, "answerability.fallback_threshold"

    def embed(questions: list[str]):  # loaded only when there is something to cluster
        embedder = retriever.embedder if retriever else get_embedder(cfg.embedding, resolve_profile(cfg.embedding))
        return embedder.embed_queries(questions)

    return find_gaps(requests, embed, mon, threshold, source)


def _beside(uri: str, name: str) -> str:
    """The file `name` in the folder of `uri` (a path or an object-store URI)."""
    return uri.rsplit("/", 1)[0] + "/" + name if is_remote(uri) else str(Path(uri).with_name(name))
