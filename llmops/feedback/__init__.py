"""Improve: production questions back into the next release. `llmops feedback export` selects the questions of the
request log worth a review (negative feedback, "not in the documents", low relevance) into a review file;
`llmops feedback merge` adds the reviewed ones to the eval set and the fine-tune data, with provenance.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "review": ("ReviewExport", "ReviewFileError", "ReviewRow", "normalize_question", "read_review_file",
                   "select_for_review", "write_review_file"),
        "merge": ("MergePlan", "PlannedQuestion", "apply_merge", "plan_merge", "production_id", "to_finetune"),
        "thresholds": ("threshold_lookup",),
    },
)
