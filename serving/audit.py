"""The guardrails' audit log: one JSON line per decision, through the `llmops.audit` logger and, with
`serving.audit_log` set, appended to that file.

A line says when, which answer (the response `id`), which release, the stage, the policy, the action and the
decision's detail (kinds and counts). It never holds the question, the answer or the matched text: no raw PII.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

__all__ = ["AUDIT_LOGGER", "GuardrailAudit"]

AUDIT_LOGGER = "llmops.audit"
log = logging.getLogger(AUDIT_LOGGER)


class GuardrailAudit:
    def __init__(self, path: str | None = None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()  # one line at a time, whole (workers are separate processes: O_APPEND)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, answer_id: str, release_id: str, decisions: Iterable[Any]) -> None:
        lines = [
            json.dumps(
                {
                    "time": round(time.time(), 3),
                    "answer_id": answer_id,
                    "release": release_id,
                    "stage": d.stage,
                    "policy": d.policy,
                    "action": d.action,
                    "detail": d.detail,
                },
                ensure_ascii=False,
            )
            for d in decisions
        ]
        if not lines:
            return
        for line in lines:
            log.info(line)
        if self.path is not None:
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write("".join(line + "\n" for line in lines))
