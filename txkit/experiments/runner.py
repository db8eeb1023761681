"""Running an experiment: every planned run in order (or in parallel processes), with one progress display,
a state file that lets an interrupted experiment continue, and failures recorded without stopping the rest.

The experiment directory holds experiment.toml (the file as last run), plan.json, state.json, stages/ and
runs/ (one txkit run directory each) and logs/ (each run's own training output); runs submitted through
submitit (executors.py) add jobs.json, task_states/ and logs/submitit/.
"""

from __future__ import annotations

import errno
import os
import shutil
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from txkit.errors import TxkitError
from txkit.experiments.executors import active_runs, run_here, run_in_pool
from txkit.experiments.plan import PLAN_FILE, Plan, PlanError, PlannedRun, expand, slug
from txkit.experiments.spec import check_data_roots, check_external, load_experiment, save_external
from txkit.experiments.state import DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, ExperimentState
from txkit.rundir import RunDir

COPY_OF_FILE, LOCK_FILE = "experiment.toml", ".lock"
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
    check_external(experiment)
    check_folds(experiment)
    root = Path(out or Path("experiments") / slug(experiment.name)).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TxkitError(f"--out {root}: cannot create the experiment directory ({exc.strerror or exc}); choose "
                         f"another --out{' (a shorter one)' if exc.errno == errno.ENAMETOOLONG else ''}") from None
    with _lock(root):
        _check_same_experiment(root, experiment.name)
        plan = expand(experiment, root, overrides)
        _check_name_lengths(plan, root)
        _copy_file(Path(path), root)
        plan.save(root)
        save_external(root, experiment)
        state = ExperimentState.load(root, rebuild=True)  # a damaged state.json: every run is found again
        todo = [run for run in plan.runs if not _finished(state, run, root)]
        try:
            with GridProgress(console, experiment.name, len(plan.runs), len(plan.runs) - len(todo)) as display:
                if executor != "local":
                    from txkit.experiments.executors import submit_runs

                    state = submit_runs(executor, todo, root, experiment, executor_options or {}, jobs, wait, display)
                    return root, state.counts(run.id for run in plan.runs)
                todo = _not_in_jobs(todo, root, console)
                if jobs == 1:
                    run_here(todo, state, root, display)
                else:
                    run_in_pool(todo, state, root, display, jobs)
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

def check_folds(experiment) -> None:
    """Before anything trains: [grid] folds = K against each dataset the cells fold (a class with fewer patients
    than K, a fold whose training folds leave nothing to validate on), so it fails once, not once per run."""
    if experiment.folds is None:
        return
    from txkit.config import TrainConfig
    from txkit.data.splits import fold_parts
    from txkit.errors import for_config
    from txkit.experiments.spec import ExperimentFileError
    from txkit.plugins import create

    checked = set()
    for entry in experiment.strategies:
        settings = {**experiment.defaults, **experiment.target, **entry.overrides}
        fields = TrainConfig.model_fields
        data = {key: settings.get(key, fields[key].default) for key in ("dataset", "data_root", "skip_bad_images",
                                                                        "fold_seed")}
        options = dict(settings.get("data_options", {}))
        if data["skip_bad_images"]:
            options["skip_bad_images"] = True
        key = repr((data, sorted(options.items())))
        if key in checked:
            continue
        checked.add(key)
        try:
            dataset = create("dataset", data["dataset"], root=data["data_root"], **options)
            dataset.check_labels()
            for repeat in range(experiment.repeats):
                for fold in range(experiment.folds):
                    fold_parts(dataset, experiment.folds, fold, repeat, data["fold_seed"])
        except TxkitError as exc:
            raise ExperimentFileError(f"{experiment.path}: [grid] folds = {experiment.folds}: "
                                      f"{for_config(str(exc))}") from None


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
        try:
            previous = Plan.load(root).experiment
        except PlanError:  # damaged: this run writes it anew (the runs keep their directories, keyed by config)
            return
        if previous != name:
            raise TxkitError(f"{root} holds experiment {previous!r}, not {name!r}; choose another --out")


def _check_name_lengths(plan: Plan, root: Path) -> None:
    """A run's name (its folder, its log file) longer than the file system allows would fail run by run."""
    try:
        limit = os.pathconf(root, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer: the usual limit
        limit = 255
    for run in plan.runs:
        name = f"{run.id}.log"  # logs/RUN.log is the longest name a run gets
        if len(name) > limit:
            fix = (f"give its strategies entry {run.cell['strategy']!r} a shorter name = \"...\"" if run.cell
                   else "give its stage a shorter name")
            raise TxkitError(f"run {run.id}: the name is {len(run.id)} characters, more than the file system at "
                             f"{root} allows ({limit - len('.log')}); {fix}")


def _copy_file(path: Path, root: Path) -> None:
    copy = root / COPY_OF_FILE
    if not (copy.exists() and copy.samefile(path)):
        shutil.copyfile(path, copy)


def _finished(state: ExperimentState, run: PlannedRun, root: Path) -> bool:
    return state.is_done(run.id) and RunDir(root / run.directory).file(RunDir.SUMMARY).exists()


def _not_in_jobs(todo: list[PlannedRun], root: Path, console: Console) -> list[PlannedRun]:
    """Runs that a submitit job of an earlier `experiment run --executor ...` still trains are left to it."""

    busy = active_runs(root, [run.id for run in todo])
    if busy:
        console.print(f"{len(busy)} runs are still queued or running in submitit jobs; left to them")
    return [run for run in todo if run.id not in busy]


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
