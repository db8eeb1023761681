"""state.json: the status of every run of an experiment, rewritten atomically after each change; jobs.json:
the scheduler job each run was last submitted as.

Only the process that runs ``txkit experiment run`` writes state.json. A run trained as a submitit job (on a
Slurm node or a local subprocess) writes its own record, ``task_states/RUN_ID.json``, instead: many tasks
finishing at once on a shared file system would otherwise overwrite each other's updates. Loading the state
folds those records in, the newer of the two winning (every entry carries ``at``, seconds since the epoch).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from txkit.errors import TxkitError

STATE_FILE, JOBS_FILE, TASK_STATES = "state.json", "jobs.json", "task_states"
DONE, FAILED, RUNNING, INTERRUPTED, QUEUED = "done", "failed", "running", "interrupted", "queued"


def _write_json(path: Path, data) -> None:
    from txkit.storage import write_json

    write_json(path, data)


def _read(path: Path) -> dict:
    """A JSON object, or {} for a file that is missing or torn (a task killed while writing)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class StateError(TxkitError):
    """An experiment's state.json that cannot be read."""


def _runs(path: Path) -> dict:
    """The "runs" table of state.json ({} when there is none yet)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
    else:
        runs = data.get("runs") if isinstance(data, dict) else None
        if isinstance(runs, dict) and all(isinstance(entry, dict) for entry in runs.values()):
            return runs
        problem = "no table of runs"
    raise StateError(f"{path}: unreadable ({problem}); run `txkit experiment run` on this experiment again (with "
                     f"--out {path.parent}): it rebuilds the file from the run directories, and finished runs are "
                     f"not trained again")


def _stamp() -> dict:
    return {"updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "at": time.time()}


class ExperimentState:
    def __init__(self, root: Path, runs: dict | None = None):
        self.root, self.runs = Path(root), runs or {}

    @classmethod
    def load(cls, root: Path, rebuild: bool = False) -> "ExperimentState":
        """The state of every run. An unreadable state.json is one line naming it (:class:`StateError`);
        with ``rebuild`` (what `txkit experiment run` does) it is started afresh instead: each run is then
        found again from its run directory, a finished run by its summary without training again."""
        root = Path(root)
        path = root / STATE_FILE
        try:
            runs = _runs(path)
        except StateError:
            if not rebuild:
                raise
            runs = {}
            cls(root, runs).save()
        for path in sorted((root / TASK_STATES).glob("*.json")):
            record, current = _read(path), runs.get(path.stem, {})
            # A record of the job that state.json names is the later word whatever the clocks of the nodes say
            same_job = record.get("job_id") is not None and record.get("job_id") == current.get("job_id")
            if same_job or record.get("at", 0) > current.get("at", 0):
                runs[path.stem] = {**current, **record}
        return cls(root, runs)

    def status(self, run_id: str) -> str | None:
        return self.runs.get(run_id, {}).get("status")

    def is_done(self, run_id: str) -> bool:
        return self.status(run_id) == DONE

    def error(self, run_id: str) -> str | None:
        return self.runs.get(run_id, {}).get("error")

    def mark(self, run_id: str, status: str, **details) -> None:
        entry = {k: v for k, v in self.runs.get(run_id, {}).items() if k in ("directory", "kind")}
        entry.update(status=status, **_stamp(), **details)
        self.runs[run_id] = entry
        self.save()

    def save(self) -> None:
        _write_json(self.root / STATE_FILE, {"runs": self.runs})

    def counts(self, run_ids) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run_id in run_ids:
            status = self.status(run_id) or "pending"
            counts[status] = counts.get(status, 0) + 1
        return counts


def write_task_state(root: Path, run_id: str, status: str, **details) -> None:
    """Called in the job that trains ``run_id``: its own record, read back by ExperimentState.load."""
    folder = Path(root) / TASK_STATES
    folder.mkdir(exist_ok=True)
    _write_json(folder / f"{run_id}.json", {"status": status, **_stamp(), **details})


class JobBook:
    """jobs.json: run id -> {job_id, executor, submitted, folder}, the job each run was last submitted as."""

    def __init__(self, root: Path):
        self.path = Path(root) / JOBS_FILE
        self.jobs: dict[str, dict] = _read(self.path)

    def get(self, run_id: str) -> dict | None:
        return self.jobs.get(run_id)

    def record(self, run_ids: list[str], job_ids: list[str], executor: str, folder: Path) -> None:
        submitted = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for run_id, job_id in zip(run_ids, job_ids):
            self.jobs[run_id] = {"job_id": job_id, "executor": executor, "submitted": submitted,
                                 "at": time.time(), "folder": str(folder)}
        _write_json(self.path, self.jobs)
