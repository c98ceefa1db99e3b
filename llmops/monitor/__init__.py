"""The monitor: a window of the request log in numbers (traffic, latency, refusals, feedback), retrieval score
drift against the eval set, coverage gaps, and the files a gate or an alert reads. `eval/monitor.py` runs it
(with the reference release and eval's RAGAS judge); `tasks/monitor.py` and `llmops monitor` call that.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "trends": ("Trends", "compute_trends"),
        "drift": ("DriftResult", "retrieval_drift"),
        "gaps": ("GapCluster", "Gaps", "find_gaps"),
        "judge": ("JudgeResult", "judge_sample"),
        "report": ("MonitorReport", "flat_metrics", "push_gauges", "write_monitor_files"),
    },
)
