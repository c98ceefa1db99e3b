"""Hugging Face `datasets` sources: a `save_to_disk` folder, local data files, or a Hub id."""

from __future__ import annotations

import posixpath
import re

import datasets
from fsspec.core import url_to_fs

from llmops.config import HFDatasetSource
from llmops.errors import IngestError
from llmops.corpus.ingest.collector import Collector
from llmops.corpus.ingest.records import add_record
from llmops.corpus.ingest.report import Skip

__all__ = ["hf_source_exists", "read_hf_dataset"]

_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "name" or "owner/name"


def read_hf_dataset(src: HFDatasetSource, out: Collector) -> None:
    out.files_seen += 1
    ds = _load(src)
    if src.text_field not in ds.column_names:
        raise IngestError(
            f"{src.path}: no column {src.text_field!r} (columns: {', '.join(ds.column_names)}); set text_field"
        )
    for i, row in enumerate(ds):
        source = f"{src.path}#split={src.split},row={i}"
        try:
            add_record(out, row, source, text_field=src.text_field, title_field=src.title_field)
        except Skip as e:
            out.skip(source, e.reason)


def hf_source_exists(path: str) -> bool:
    """True for an existing local or fsspec path, and for anything shaped like a Hub id (checked when loaded)."""
    fs, p = url_to_fs(path)
    return fs.exists(p) or ("://" not in path and _HUB_ID.match(path) is not None)


def _load(src: HFDatasetSource) -> datasets.Dataset:
    fs, p = url_to_fs(src.path)
    local = fs.exists(p)
    saved = local and any(fs.exists(posixpath.join(p, m)) for m in ("dataset_dict.json", "state.json"))
    if local and fs.isfile(p):
        args = {"path": _builder_for(p), "data_files": {src.split: src.path}}
    else:  # a folder of data files (builder and splits inferred from file names) or a Hub id
        args = {"path": src.path}
    try:
        loaded = datasets.load_from_disk(src.path) if saved else datasets.load_dataset(**args, split=src.split)
    except Exception as e:  # datasets reports bad files, unknown splits and network trouble with assorted types
        raise _load_error(src, e, from_hub=not local) from e
    return _pick_split(loaded, src)


def _pick_split(loaded: datasets.Dataset | datasets.DatasetDict, src: HFDatasetSource) -> datasets.Dataset:
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    if src.split not in loaded:
        raise IngestError(f"{src.path}: no split {src.split!r} (splits: {', '.join(loaded)}); set split")
    return loaded[src.split]


def _builder_for(path: str) -> str:
    name = path.lower()
    for suffix in _COMPRESSIONS:
        name = name.removesuffix(suffix)
    ext = posixpath.splitext(name)[1]
    if ext not in _BUILDERS:
        supported = ", ".join(sorted(_BUILDERS))
        raise IngestError(
            f"{path}: cannot load {ext or 'a file without extension'} as a dataset ({supported}, or a "
            "save_to_disk folder)"
        )
    return _BUILDERS[ext]


def _load_error(src: HFDatasetSource, e: Exception, from_hub: bool) -> IngestError:
    why = f"{type(e).__name__}: {e}"
    if not from_hub:
        return IngestError(f"{src.path}: cannot load as a dataset ({why})")
    if datasets.config.HF_HUB_OFFLINE:
        return IngestError(
            f"{src.path}: no such local file or folder, and the Hugging Face Hub is unreachable (offline mode) to "
            "load it as a Hub dataset; download it once and pass a local path (a save_to_disk folder or data files)"
        )
    return IngestError(
        f"{src.path}: cannot load from the Hugging Face Hub ({why}); if the Hub is unreachable, download the "
        "dataset once and pass a local path"
    )
