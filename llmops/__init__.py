"""flyte-llmops core library: ingestion, chunking, embedding, indexes and retrieval, independent of Flyte.

Flyte tasks in `tasks/` are thin wrappers over these functions; serving uses the same `Retriever`.
"""

__version__ = "0.1.0"
