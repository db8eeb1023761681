"""One run of an experiment grid: train it (or resume it) and report its outcome as plain data.

Called in the experiment's own process, in a worker process of ``--jobs N``, or in a submitit job
(:mod:`txkit.experiments.executors`), so it takes and returns plain data only.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from rich.console import Console

from txkit.errors import TxkitError, for_config
from txkit.experiments.plan import PlannedRun
from txkit.experiments.predictions import probabilities_of_test_split
from txkit.experiments.state import DONE, FAILED
from txkit.rundir import RunDir

LOGS = "logs"


def run_arguments(run: PlannedRun, root: Path) -> tuple:
    wants_roc = bool(run.cell and run.cell.get("roc"))
    return run.config, str(root / run.directory), str(root / LOGS / f"{run.id}.log"), wants_roc


def execute_run(config: dict, run_dir: str, log_path: str, wants_roc: bool = False) -> dict:
    """Train (or resume) one run, then keep its test probabilities if the report plots its ROC curve; a
    failure comes back as {"status": "failed", "error": one line}.

    Called in this process or in a worker process, so it takes and returns plain data only.
    """
    from txkit.training import session
    from txkit.config import TrainConfig

    started = time.perf_counter()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        console = Console(file=log, width=120)
        try:
            if RunDir(run_dir).file(RunDir.CONFIG).exists():
                _, summary = session.resume(run_dir, console)
            else:
                _, summary = session.train(TrainConfig.from_dict(config), run_dir, console)
        except session.RunInterrupted:
            raise KeyboardInterrupt from None
        except Exception as exc:  # noqa: BLE001 - one run's failure must not stop the others
            traceback.print_exc(file=log)
            return {"status": FAILED, "error": _one_line(exc), "seconds": round(time.perf_counter() - started, 2)}
        if wants_roc and summary.get("test"):
            _keep_probabilities(run_dir, log)
    test = summary.get("test") or {}
    return {"status": DONE, "seconds": round(time.perf_counter() - started, 2),
            "test_accuracy": test.get("accuracy")}


def _keep_probabilities(run_dir: str, log) -> None:
    """Predicting here, in the worker, spares the report the work; if it fails the report tries again."""
    try:
        probabilities_of_test_split(run_dir)
    except Exception:  # noqa: BLE001 - the run itself finished
        traceback.print_exc(file=log)


def _one_line(exc: Exception) -> str:
    text = (for_config(str(exc)) if isinstance(exc, TxkitError) else f"{type(exc).__name__}: {exc}").strip()
    return text.splitlines()[0] if text else type(exc).__name__
