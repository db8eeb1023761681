"""state.json: the status of every run of an experiment, rewritten atomically after each change."""

from __future__ import annotations

import json
import time
from pathlib import Path

STATE_FILE = "state.json"
DONE, FAILED, RUNNING, INTERRUPTED = "done", "failed", "running", "interrupted"


class ExperimentState:
    def __init__(self, root: Path, runs: dict | None = None):
        self.root, self.runs = Path(root), runs or {}

    @classmethod
    def load(cls, root: Path) -> "ExperimentState":
        path = Path(root) / STATE_FILE
        return cls(root, json.loads(path.read_text())["runs"] if path.exists() else {})

    def status(self, run_id: str) -> str | None:
        return self.runs.get(run_id, {}).get("status")

    def is_done(self, run_id: str) -> bool:
        return self.status(run_id) == DONE

    def error(self, run_id: str) -> str | None:
        return self.runs.get(run_id, {}).get("error")

    def mark(self, run_id: str, status: str, **details) -> None:
        entry = {k: v for k, v in self.runs.get(run_id, {}).items() if k in ("directory", "kind")}
        entry.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **details)
        self.runs[run_id] = entry
        self.save()

    def save(self) -> None:
        from txkit.training.checkpoint import write_json

        write_json(self.root / STATE_FILE, {"runs": self.runs})

    def counts(self, run_ids) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run_id in run_ids:
            status = self.status(run_id) or "pending"
            counts[status] = counts.get(status, 0) + 1
        return counts
