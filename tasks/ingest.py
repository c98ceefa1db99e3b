"""Ingest task: read the corpus sources into normalized, de-duplicated documents (+ QA examples)."""

from __future__ import annotations

import typing

from flytekit import task

from llmops.corpus.stages import run_ingest
from tasks.common import cpu_task_settings, decode_config
from tasks.decks import ingest_deck, publish

IngestOutputs = typing.NamedTuple(
    "IngestOutputs",
    [("documents_uri", str), ("qa_uri", typing.Optional[str]), ("corpus_fingerprint", str), ("report_json", str)],
)


# Not cached: the corpus can change while the config stays the same; ingest is what notices.
@task(**cpu_task_settings(cached=False))  # model secrets: Hub datasets may be gated
def ingest(config_json: str) -> IngestOutputs:
    out = run_ingest(decode_config(config_json))
    publish("Ingest", ingest_deck(out.report, out.seconds))
    return IngestOutputs(out.documents_uri, out.qa_uri, out.corpus_fingerprint, out.report.model_dump_json())
