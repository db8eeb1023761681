"""`txkit experiment status DIR`: every run's status from the run directories, state.json and the recorded
jobs' state, and the end of a failed run's log. Read-only: nothing here writes the experiment directory."""

from __future__ import annotations

import os
from pathlib import Path

from txkit.errors import TxkitError
from txkit.experiments.executors import classify, job_log, job_states
from txkit.experiments.plan import PLAN_FILE, Plan
from txkit.experiments.state import FAILED, INTERRUPTED, RUNNING, ExperimentState, JobBook
from txkit.rundir import RunDir

LOGS, LOCK_FILE = "logs", ".lock"
ORDER = ("done", "running", "queued", "failed", "interrupted", "pending")


def experiment_status(root: str | Path) -> dict:
    """{"directory", "experiment", "counts", "runs": [{run, kind, status, job, job_state, seconds,
    test_accuracy, error, log}]}."""
    root = Path(root).resolve()
    if not (root / PLAN_FILE).exists():
        raise TxkitError(f"{root}: no {PLAN_FILE}; not an experiment directory (made by `txkit experiment run`)")
    plan, state, book = Plan.load(root), ExperimentState.load(root), JobBook(root)
    states = job_states(book, [run.id for run in plan.runs])
    runner_alive = _runner_alive(root)
    rows = []
    for run in plan.runs:
        entry, job = state.runs.get(run.id) or {}, book.get(run.id)
        has_summary = RunDir(root / run.directory).file(RunDir.SUMMARY).exists()
        status, error = classify(entry, job, states.get(run.id), has_summary)
        if status == RUNNING and not job and not runner_alive:
            status = INTERRUPTED  # trained by `experiment run` here, which has ended: continues on the next
        ended = status in ("done", FAILED)  # the numbers of a run that is trained again are stale
        rows.append({"run": run.id, "kind": run.kind, "status": status, "job": (job or {}).get("job_id"),
                     "job_state": states.get(run.id), "seconds": entry.get("seconds") if ended else None,
                     "test_accuracy": entry.get("test_accuracy") if status == "done" else None, "error": error,
                     "log": str(run_log(root, run.id, job))})
    counts = {word: n for word in ORDER if (n := sum(row["status"] == word for row in rows))}
    return {"directory": str(root), "experiment": plan.experiment, "counts": counts, "runs": rows}


def run_log(root: Path, run_id: str, job: dict | None) -> Path:
    """The run's own training log; for a run whose job died before it wrote one, the job's log."""
    own = root / LOGS / f"{run_id}.log"
    if job and not (own.exists() and own.stat().st_size):
        return job_log(job)
    return own


def log_tail(path: str | Path, lines: int = 20) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def format_table(status: dict) -> str:
    header = ("run", "kind", "status", "job", "time", "test acc")
    rows = [(row["run"], row["kind"], row["status"], row["job"] or "-",
             f"{row['seconds']:.0f} s" if row["seconds"] is not None else "-",
             f"{row['test_accuracy']:.4f}" if row["test_accuracy"] is not None else "-") for row in status["runs"]]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.append(", ".join(f"{n} {word}" for word, n in status["counts"].items()))
    lines += [f"failed: {row['run']}: {row['error']}" for row in status["runs"] if row["status"] == FAILED]
    return "\n".join(lines)


def _runner_alive(root: Path) -> bool:
    """Whether an `experiment run` process holds the directory's lock now."""
    try:
        pid = int((root / LOCK_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True
