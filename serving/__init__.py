"""The RAG API in front of vLLM: OpenAI-compatible chat completions with sources, search, health, metrics and
zero-downtime release swaps. Modules: `protocol` (request/response models, the error shape), `errors` (exception ->
status), `release` (the served release and its hot swap), `service` (the logic), `app` (FastAPI routes and
middleware), `metrics` (Prometheus), `launcher` (`llmops serve`). See serving/README.md.
"""
