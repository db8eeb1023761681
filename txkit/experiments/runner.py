"""Running an experiment: every planned run in order (or in parallel processes), with one progress display,
a state file that lets an interrupted experiment continue, and failures recorded without stopping the rest.

The experiment directory holds experiment.toml (the file as last run), plan.json, state.json, stages/ and
runs/ (one txkit run directory each) and logs/ (each run's own training output); runs submitted through
submitit (executors.py) add jobs.json, task_states/ and logs/submitit/.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from txkit.errors import TxkitError, for_config
from txkit.experiments.plan import PLAN_FILE, Plan, PlannedRun, expand, slug
from txkit.experiments.predictions import probabilities_of_test_split
from txkit.experiments.spec import check_data_roots, load_experiment
from txkit.experiments.state import DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, ExperimentState
from txkit.rundir import RunDir

COPY_OF_FILE, LOCK_FILE, LOGS = "experiment.toml", ".lock", "logs"
STATUS_WORDS = {DONE: "finished", INTERRUPTED: "interrupted", RUNNING: "unfinished", "pending": "not run",
                QUEUED: "queued"}


class ExperimentInterrupted(TxkitError):
    exit_code = 130


class RunsFailed(TxkitError):
    """Some runs failed; everything is recorded and the failed ones are retried on the next run."""


def run_experiment(path: str | Path, out: str | Path | None = None, jobs: int = 1, console: Console | None = None,
                   overrides: dict[str, str] | None = None, executor: str = "local",
                   executor_options: dict | None = None, wait: bool = False) -> tuple[Path, dict[str, int]]:
    """Run every unfinished run of the experiment in ``path`` (with ``--set`` overrides) here, or submit them
    through submitit (``executor`` slurm or submitit-local: see executors.py; ``wait`` follows them to the
    end); returns its directory and the count of runs per status."""
    console = console or Console(stderr=True)
    if jobs < 1:
        raise TxkitError(f"--jobs must be 1 or more, got {jobs}")
    overrides = dict(overrides or {})
    experiment = load_experiment(path, overrides)
    check_data_roots(experiment)
    root = Path(out or Path("experiments") / slug(experiment.name)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root):
        _check_same_experiment(root, experiment.name)
        plan = expand(experiment, root, overrides)
        _copy_file(Path(path), root)
        plan.save(root)
        state = ExperimentState.load(root)
        todo = [run for run in plan.runs if not _finished(state, run, root)]
        try:
            with GridProgress(console, experiment.name, len(plan.runs), len(plan.runs) - len(todo)) as display:
                if executor != "local":
                    from txkit.experiments.executors import submit_runs

                    state = submit_runs(executor, todo, root, experiment, executor_options or {}, jobs, wait, display)
                    return root, state.counts(run.id for run in plan.runs)
                todo = _not_in_jobs(todo, root, console)
                if jobs == 1:
                    _run_here(todo, state, root, display)
                else:
                    _run_in_pool(todo, state, root, display, jobs)
        except (KeyboardInterrupt, BrokenProcessPool) as exc:
            again = f"finished runs are kept: run `{_same_command(path, root, overrides)}` again to continue"
            if isinstance(exc, BrokenProcessPool):
                raise TxkitError(f"a worker process died (out of memory?); {again}") from None
            if executor != "local":
                raise ExperimentInterrupted(f"interrupted; submitted jobs go on: follow them with `txkit experiment "
                                            f"status {root}`; runs not yet submitted are submitted when you "
                                            f"run the command again") from None
            raise ExperimentInterrupted(f"interrupted; {again}") from None
    return root, state.counts(run.id for run in plan.runs)


def _same_command(path, root: Path, overrides: dict[str, str]) -> str:
    return " ".join([f"txkit experiment run {path} --out {root}"] + [f"--set {k}={v}" for k, v in overrides.items()])


def check_outcome(root: Path, counts: dict[str, int]) -> None:
    """Raise RunsFailed naming the first failure when some runs failed, counting what the others did."""
    failed, total = counts.get(FAILED, 0), sum(counts.values())
    if not failed:
        return
    state = ExperimentState.load(root)
    first = next(run.id for run in Plan.load(root).runs if state.status(run.id) == FAILED)
    head = f"all {total} runs failed" if failed == total else f"{failed} of {total} runs failed"
    others = ", ".join(f"{n} {STATUS_WORDS.get(status, status)}" for status, n in sorted(counts.items())
                       if status != FAILED)
    raise RunsFailed(f"{head} (first: {first}: {state.error(first)}){'; ' + others if others else ''}; "
                     f"fix the cause and run again to retry the failed ones")


# ------------------------------------------------------------------------------------------ preparation

@contextmanager
def _lock(root: Path):
    """One `experiment run` per directory at a time; a lock left by a dead process is taken over."""
    lock = root / LOCK_FILE
    if lock.exists():
        text = lock.read_text().strip()
        pid = int(text) if text.isdigit() else 0
        if pid and _alive(pid):
            raise TxkitError(f"{root} is being run by process {pid}; wait for it or stop it first")
    lock.write_text(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _check_same_experiment(root: Path, name: str) -> None:
    if (root / PLAN_FILE).exists():
        previous = Plan.load(root).experiment
        if previous != name:
            raise TxkitError(f"{root} holds experiment {previous!r}, not {name!r}; choose another --out")


def _copy_file(path: Path, root: Path) -> None:
    copy = root / COPY_OF_FILE
    if not (copy.exists() and copy.samefile(path)):
        shutil.copyfile(path, copy)


def _finished(state: ExperimentState, run: PlannedRun, root: Path) -> bool:
    return state.is_done(run.id) and RunDir(root / run.directory).file(RunDir.SUMMARY).exists()


def _not_in_jobs(todo: list[PlannedRun], root: Path, console: Console) -> list[PlannedRun]:
    """Runs that a submitit job of an earlier `experiment run --executor ...` still trains are left to it."""
    from txkit.experiments.executors import active_runs

    busy = active_runs(root, [run.id for run in todo])
    if busy:
        console.print(f"{len(busy)} runs are still queued or running in submitit jobs; left to them")
    return [run for run in todo if run.id not in busy]


# ---------------------------------------------------------------------------------------------- running

def _run_here(todo: list[PlannedRun], state: ExperimentState, root: Path, display: GridProgress) -> None:
    for run in todo:
        if _skip_if_blocked(run, state, display):
            continue
        state.mark(run.id, RUNNING, kind=run.kind, directory=run.directory)
        display.started(run)
        try:
            outcome = execute_run(*run_arguments(run, root))
        except KeyboardInterrupt:
            state.mark(run.id, INTERRUPTED)
            raise
        _record(run, outcome, state, display)


def _run_in_pool(todo: list[PlannedRun], state: ExperimentState, root: Path, display: GridProgress,
                 jobs: int) -> None:
    import multiprocessing

    from txkit.experiments.executors import visible_gpu_slots

    threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: forking a process that already ran torch's thread pools can deadlock the children.
    context = multiprocessing.get_context("spawn")
    gpus = context.Queue()  # each worker takes one slot's CUDA_VISIBLE_DEVICES (round-robin over the GPUs)
    for slot in visible_gpu_slots(jobs):
        gpus.put(slot)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads, gpus))
    waiting, active = list(todo), {}
    try:
        while waiting or active:
            _submit_ready(pool, waiting, active, jobs, state, root, display)
            if not active:
                break
            finished, _ = wait(active, return_when=FIRST_COMPLETED)
            for future in finished:
                _record(active.pop(future), future.result(), state, display)
    except (KeyboardInterrupt, BrokenProcessPool):
        for run in active.values():
            state.mark(run.id, INTERRUPTED)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _submit_ready(pool, waiting: list[PlannedRun], active: dict, jobs: int, state: ExperimentState, root: Path,
                  display: GridProgress) -> None:
    for run in list(waiting):
        if len(active) >= jobs:
            return
        if _skip_if_blocked(run, state, display):
            waiting.remove(run)
        elif all(state.is_done(need) for need in run.needs):
            waiting.remove(run)
            state.mark(run.id, RUNNING, kind=run.kind, directory=run.directory)
            display.started(run)
            active[pool.submit(execute_run, *run_arguments(run, root))] = run


def run_arguments(run: PlannedRun, root: Path) -> tuple:
    wants_roc = bool(run.cell and run.cell.get("roc"))
    return run.config, str(root / run.directory), str(root / LOGS / f"{run.id}.log"), wants_roc


def _init_worker(threads: int, gpus) -> None:
    _die_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    gpu = gpus.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """On Linux a worker is killed with its parent, so a killed experiment leaves no run training behind
    that the next `experiment run` would resume at the same time."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _skip_if_blocked(run: PlannedRun, state: ExperimentState, display: GridProgress) -> bool:
    """A run whose earlier stage failed fails too, without training."""
    failed = [need for need in run.needs if state.status(need) == FAILED]
    if not failed:
        return False
    outcome = {"status": FAILED, "error": f"needs stage run {failed[0]}, which failed", "seconds": 0.0}
    state.mark(run.id, FAILED, kind=run.kind, directory=run.directory, error=outcome["error"])
    display.finished(run, outcome)
    return True


def _record(run: PlannedRun, outcome: dict, state: ExperimentState, display: GridProgress) -> None:
    details = {k: outcome[k] for k in ("seconds", "error", "test_accuracy") if outcome.get(k) is not None}
    state.mark(run.id, outcome["status"], **details)
    display.finished(run, outcome)


def execute_run(config: dict, run_dir: str, log_path: str, wants_roc: bool = False) -> dict:
    """Train (or resume) one run, then keep its test probabilities if the report plots its ROC curve; a
    failure comes back as {"status": "failed", "error": one line}.

    Called in this process or in a worker process, so it takes and returns plain data only.
    """
    from txkit.training import session
    from txkit.training.config import TrainConfig

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


# ---------------------------------------------------------------------------------------------- display

class GridProgress:
    """One bar for the whole grid, the runs in progress beside it, and a line per finished run."""

    def __init__(self, console: Console, name: str, total: int, already_done: int):
        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                                 TextColumn("{task.fields[running]}"), console=console)
        self.task = self.progress.add_task(name, total=total, completed=already_done, failed=0, running="")
        self.running: list[str] = []
        self.failed = 0
        if already_done:
            console.print(f"{already_done} of {total} runs already finished; continuing")

    def __enter__(self) -> "GridProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def started(self, run: PlannedRun) -> None:
        self.running.append(run.id)
        self._refresh()

    def finished(self, run: PlannedRun, outcome: dict) -> None:
        if run.id in self.running:
            self.running.remove(run.id)
        seconds = f"{outcome.get('seconds', 0):.0f} s"
        if outcome["status"] == DONE:
            accuracy = outcome.get("test_accuracy")
            score = f"test accuracy {accuracy:.4f}" if accuracy is not None else "no test split"
            self.progress.console.print(f"[green]done[/]   {escape(run.id)}  {score}  ({seconds})", highlight=False)
        else:
            self.failed += 1
            self.progress.console.print(f"[red]failed[/] {escape(run.id)}: {escape(outcome['error'])}",
                                        highlight=False)
        self.progress.advance(self.task)
        self._refresh()

    def _refresh(self) -> None:
        shown = ", ".join(self.running[:2]) + (f" +{len(self.running) - 2}" if len(self.running) > 2 else "")
        self.progress.update(self.task, failed=self.failed, running=shown)
