"""Provenance: what each cached stage reads and its cache key (config fields, the content of the files and models
they name, the stage's code closure and library versions); see docs/caching.md.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules, and a stage's
code closure (which includes the `__init__` files above its modules) stays the code it runs.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "stage_inputs": ("STAGES", "Stage", "UndeclaredConfigRead", "config_record", "stage_code", "stage_config",
                         "stage_key", "stage_keys"),
        "code_version": ("CodeClosure", "code_closure"),  # not `code_version`: the submodule has that name
        "content_digest": ("ref_digest",),
        "model_paths": ("resolve_model_path",),
    },
)
