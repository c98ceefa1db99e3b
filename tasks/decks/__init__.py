"""Every stage's Flyte Deck, one module per stage family. Plain functions returning HTML over the stages' typed
outputs, so they are testable and renderable outside Flyte (tests render them in headless Chromium).

    indexing.py    ingest, chunk, index (with its embedding shards) and the run summary
    evaluation.py  a model's evaluation, and the gate decision
    finetune.py    the adapter card
    release.py     the release card
    monitor.py     a window of production traffic (the monitor workflow)
"""

from llmops.htmlkit import publish_deck as publish
from tasks.decks.evaluation import evaluation_deck, gates_deck
from tasks.decks.finetune import finetune_deck
from tasks.decks.indexing import chunk_deck, index_deck, ingest_deck, run_summary_deck, shards_section
from tasks.decks.monitor import monitor_deck
from tasks.decks.release import release_card

__all__ = [
    "chunk_deck",
    "evaluation_deck",
    "finetune_deck",
    "gates_deck",
    "index_deck",
    "ingest_deck",
    "monitor_deck",
    "publish",
    "release_card",
    "run_summary_deck",
    "shards_section",
]
