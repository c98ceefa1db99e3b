"""Retrieval evaluation task: recall@k / MRR / nDCG for every retrieval mode, and the run's summary Deck."""

from __future__ import annotations

import json
import tempfile
import typing

from flytekit import task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from eval.retrieval import evaluate_retrieval_modes, store_retrieval_eval_report
from eval.schemas import RetrievalEvalReport
from llmops.corpus.ingest.report import read_ingest_report
from llmops.corpus.qa import read_qa
from llmops.corpus.stages import read_chunk_table
from llmops.index.retriever import Retriever
from llmops.storage import fetch_file
from tasks.common import cpu_task_settings, decode_config
from tasks.decks import publish, run_summary_deck


# Cached: every input is content-addressed, so the same index and eval set give the same report.
@task(**cpu_task_settings())  # model secrets: the questions are embedded with the index's model
def evaluate_retrieval(
    config_json: str,
    stage_key: str,
    index: FlyteDirectory,
    qa_uri: typing.Optional[str],
    chunks_uri: str,
    ingest_report_json: str,
    index_stats_json: str,
) -> FlyteFile:
    """Score the index on the eval set (if any) and publish the run summary. Returns the report JSON file."""
    cfg = decode_config(config_json, "retrieval_eval")
    retriever = Retriever.load(index.remote_source or index.path)
    report = RetrievalEvalReport(index_version=retriever.version, status="not measured: no eval set in the config")
    if qa_uri:
        examples = read_qa(fetch_file(qa_uri, tempfile.mkdtemp()))
        report = evaluate_retrieval_modes(retriever, examples, cfg.eval.ks, cfg.eval.max_questions)
    uri = store_retrieval_eval_report(cfg.artifacts.root, report)
    n_tokens = read_chunk_table(chunks_uri).column("n_tokens").to_pylist()
    ingest_report = read_ingest_report(ingest_report_json, "evaluate_retrieval input ingest_report_json")
    publish(
        "Run summary",
        run_summary_deck(retriever.manifest, ingest_report, json.loads(index_stats_json), n_tokens, report),
    )
    return FlyteFile(uri, remote_path=False)
