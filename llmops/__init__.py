"""flyte-llmops core library: everything the pipeline does, as plain functions and classes, independent of Flyte.

Subpackages by domain; imports point down this list (tests/test_layers.py, `LLMOPS_DEPENDS`):

    provenance  what a cached stage reads and its cache key: config fields, content digests, code closure
    corpus      sources -> documents and QA sets, normalization, language, chunking; the ingest and chunk stages
    index       embedding, vector index, BM25, fusion and its tuning, Retriever, relevance, index artifact, build
    llm         generation client protocol and backends (OpenAI-compatible/vLLM, transformers), vLLM server
    rag         prompt template and budget, RagChain
    finetune    LoRA fine-tuning and the adapter artifact
    release     registry, promotion, release artifact checks

Base modules, importable from every subpackage: `config`, `errors`, `storage`, `workspace`, `htmlkit`, `exports`.
Nothing here imports `eval`, `serving`, `tasks`, `workflows` or `cli`; they build on this package.
"""

__version__ = "0.1.0"
