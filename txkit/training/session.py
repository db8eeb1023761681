"""A whole training run as the CLI drives it: run directory, progress display, summary."""

from __future__ import annotations

import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from txkit import __version__, rundir, storage
from txkit.colorizers import inputs
from txkit.errors import TxkitError
from txkit.rundir import RunDir, RunLock
from txkit.training import commit, distributed
from txkit.training.build import resolved_weights
from txkit.config import TrainConfig
from txkit.data.loader import worker_failure
from txkit.training.engine import NonFiniteLoss, Trainer, engine_summary
from txkit.training.runtime import out_of_memory

FINISHED = ("completed", "early-stopped")


class RunInterrupted(TxkitError):
    exit_code = 130


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[val]}"),
                    TimeRemainingColumn(), console=console, transient=False,
                    refresh_per_second=2)


def train(cfg: TrainConfig, out: str | None = None, console: Console | None = None,
          wording: Callable[[str], str] = str) -> tuple[Path, dict]:
    """Check and build everything, then make the run directory (a failed start leaves nothing behind).
    ``wording`` renders the warnings, which name config fields in backticks: ``txkit.errors.for_cli`` names
    the CLI's flags instead. The run directory is locked until this returns (one writer per run)."""
    distributed.ensure_init()  # under torchrun: join the process group (no-op in one process)
    console = distributed.quiet(console or Console(stderr=True))  # only process 0 prints
    trainer, lock = distributed.main_first(_new_run, cfg, out)  # process 0 first; an error on one stops all
    try:
        trainer.run_dir = distributed.from_main(trainer.run_dir)
        for warning in intensity_warnings(trainer):
            console.print(f"warning: {wording(warning)}", style="yellow", markup=False, highlight=False)
        return trainer.run_dir, _run(trainer, console)
    finally:
        if lock is not None:
            lock.release()


def _new_run(cfg: TrainConfig, out: str | None) -> tuple[Trainer, RunLock | None]:
    main = distributed.is_main()  # under torchrun the others build the same Trainer, without a run directory
    if out and main:
        rundir.check_new_run_dir(Path(out).expanduser())  # before minutes of loading, again when it is made
    cfg = inputs.check_config(cfg)  # `intensity` hu and the colorizer, before any data is read
    trainer = Trainer(cfg)
    if not main:
        return trainer, None
    existed = bool(out) and Path(out).expanduser().is_dir()  # empty, or holding only the user's dot files
    lock = rundir.new_run_dir(cfg, out)  # only process 0 locks the run (it alone writes the run directory)
    trainer.run_dir = lock.run
    try:
        write_config(trainer)
    except BaseException as exc:
        if existed:  # the folder and what the user keeps in it stay; only what this start wrote goes
            storage.remove_stale_temps(trainer.run_dir)
            (trainer.run_dir / RunDir.CONFIG).unlink(missing_ok=True)
        else:
            shutil.rmtree(trainer.run_dir, ignore_errors=True)
        lock.release()
        if isinstance(exc, storage.WriteError):  # the first file of the run: the folder is what is wrong
            fix = "free space or choose another `out`" if exc.no_space else "choose a writable folder as `out`"
            raise TxkitError(f"{exc}; {fix}") from None
        raise
    return trainer, lock


def resume(run_dir: str, console: Console | None = None, skip_bad_images: bool = False) -> tuple[Path, dict]:
    """Continue an interrupted run; ``skip_bad_images`` turns the option on from now on (config.json records it).
    The run directory is locked until this returns: a second resume of the same run is refused."""
    distributed.ensure_init()
    console = distributed.quiet(console or Console(stderr=True))
    run = Path(run_dir)
    trainer, previous, lock = distributed.main_first(_restore, run, skip_bad_images)  # process 0 repairs first
    try:
        if trainer is None:
            return run, previous
        if trainer.training_done():  # every epoch is committed; what failed came after them (the test split)
            console.print(f"resuming {run}: its {trainer.state.epoch} epoch(s) are trained; testing the best "
                          f"checkpoint")
        else:
            console.print(f"resuming {run} after epoch {trainer.state.epoch}")
        return trainer.run_dir, _run(trainer, console)
    finally:
        if lock is not None:
            lock.release()


def _restore(run: Path, skip_bad_images: bool) -> tuple[Trainer | None, dict | None, RunLock | None]:
    """The resumed Trainer (None for a finished run, with its summary) and, on process 0, the run's lock."""
    run_dir = RunDir(run)
    run_dir.config_json()  # one line when the folder is not a readable run (before a lock file is made there)
    lock = run_dir.lock() if distributed.is_main() else None
    try:
        if lock is not None:
            run_dir.remove_interrupted_writes()  # a killed write's temp and uncommitted files, before any read
        trainer, previous = _restore_locked(run, skip_bad_images)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if trainer is None and lock is not None:
        lock.release()
        lock = None
    return trainer, previous, lock


def _restore_locked(run: Path, skip_bad_images: bool) -> tuple[Trainer | None, dict | None]:
    cfg, recorded = rundir.load_run_config(run)
    previous = RunDir(run).summary()
    if previous and previous.get("status") in FINISHED:
        return None, previous
    if previous and previous.get("status") == "non-finite-loss":
        raise TxkitError(f"{run} stopped on a non-finite loss; resuming would repeat it: train a new run with a "
                         f"lower `lr`")
    distributed.check_resume(run, recorded.get("distributed"))
    skipping = skip_bad_images and not cfg.skip_bad_images
    if skipping:
        cfg = cfg.replace(skip_bad_images=True)
    saved = commit.read(run)  # completes a rename that checkpoint.json committed
    if saved is None:  # nothing was committed before the interruption: start over with the initial weights
        if distributed.is_main():
            (run / RunDir.METRICS).unlink(missing_ok=True)
        trainer = Trainer(cfg, run)
    else:
        trainer = Trainer(cfg, run, load_weights=False)
        trainer.load_checkpoint(saved)
    if skipping and distributed.is_main():  # so that a later resume keeps skipping
        RunDir(run).record_config(cfg, train_images=len(trainer.train_data), val_images=len(trainer.val_data))
    return trainer, None


def write_config(trainer: Trainer) -> None:
    resolved = {"weights": resolved_weights(trainer.cfg, trainer.strategy), "num_classes": trainer.dataset.num_classes,
                "classes": trainer.dataset.classes, "task": trainer.task, "image_size": trainer.size,
                "stages": trainer.net.stage_names(), "phases": [p.__dict__ for p in trainer.strategy.phases],
                "train_images": len(trainer.train_data), "val_images": len(trainer.val_data),
                "class_weights": trainer.class_weights, "sampler": trainer.cfg.sampler,
                "intensity": {**trainer.rule.record(), "warnings": intensity_warnings(trainer)}}
    if trainer.folds is not None:  # which fold of which assignment (its digest is equal across cells and seeds)
        resolved["folds"] = trainer.folds.record
    storage.write_json(trainer.run_dir / RunDir.CONFIG,
                    {"config": trainer.cfg.to_dict(), "resolved": resolved, **environment()})


def intensity_warnings(trainer: Trainer) -> list[str]:
    """The fitted rule's warnings (mixed modalities or bit depths, with counts) and the colorizer's."""
    return list(trainer.rule.warnings) + inputs.network_warnings(trainer.cfg, trainer.rule)


def _run(trainer: Trainer, console: Console) -> dict:
    started = time.perf_counter()
    status = "interrupted"
    try:
        with progress_bar(console) as progress:
            status = trainer.fit(progress)
    except NonFiniteLoss:
        status = "non-finite-loss"
        raise
    except storage.WriteError as exc:
        fix = "free space" if exc.no_space else f"make {trainer.run_dir} writable"
        kept = f"the last good checkpoint (epoch {trainer.state.epoch}) is intact" if trainer.state.epoch else \
            "no epoch had finished, so the run starts over"
        raise TxkitError(f"{exc}; {kept}: {fix} and continue with {distributed.resume_command(trainer.run_dir)}") \
            from None
    except (RuntimeError, MemoryError) as exc:
        fault = machine_fault(trainer, exc)
        if fault is None:
            raise
        raise fault from None
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted after {trainer.state.epoch} finished epoch(s); continue with: "
                             f"{distributed.resume_command(trainer.run_dir)}") from None
    finally:
        try:
            summary = _finish(trainer, status, time.perf_counter() - started)
        finally:
            trainer.loaders.close()
    return summary


def machine_fault(trainer: Trainer, exc: BaseException) -> TxkitError | None:
    """One line for a run stopped by the machine (a loader worker killed, memory exhausted), None otherwise.
    The run stays resumable: its last checkpoint is untouched."""
    problem = worker_failure(exc)
    if problem is None:
        memory = out_of_memory(exc)
        if memory is None:
            return None
        problem = f"{memory}; use a smaller `batch_size` or `image_size`"
    kept = f"its last good checkpoint, epoch {trainer.state.epoch}, is intact" if trainer.state.epoch else \
        "no epoch had finished, so it starts over"
    return TxkitError(f"{problem} in a new run, or free memory and continue this one with "
                      f"{distributed.resume_command(trainer.run_dir)} ({kept})")


def _finish(trainer: Trainer, status: str, elapsed: float) -> dict:
    """The summary; on a full disk it stays in memory (the checkpoint, not the summary, is what resumes)."""
    test = trainer.test_metrics() if status in FINISHED else None
    oof = trainer.oof_metrics() if status in FINISHED else None
    summary = engine_summary(trainer, status, elapsed, test, oof)
    try:
        if distributed.is_main():
            storage.write_json(trainer.run_dir / RunDir.SUMMARY, summary)
    except storage.WriteError:
        if status in FINISHED:
            raise
    return summary


# --- provenance recorded in config.json -------------------------------------------------------------
def environment() -> dict:
    from txkit.plugins import get_plugins

    versions = {"txkit": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "timm", "numpy", "scikit-learn", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    plugins = {p.distribution: p.version for p in get_plugins().plugins.values()}
    return {"versions": versions, "plugins": plugins, "git_commit": _git_commit(),
            "platform": platform.platform(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "distributed": distributed.record()}  # world size and gradient backend (torchrun)


def _git_commit() -> str | None:
    source = Path(__file__).resolve().parents[2]  # the checkout txkit runs from
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
