"""A whole training run as the CLI drives it: run directory, progress display, summary."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from txkit.errors import TxkitError
from txkit.training import checkpoint as ckpt
from txkit.training import runs
from txkit.training.build import resolved_weights
from txkit.training.config import TrainConfig
from txkit.training.engine import NonFiniteLoss, Trainer, engine_summary, read_checkpoint

FINISHED = ("completed", "early-stopped")


class RunInterrupted(TxkitError):
    exit_code = 130


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[val]}"),
                    TimeRemainingColumn(), console=console, transient=False,
                    refresh_per_second=2)


def train(cfg: TrainConfig, out: str | None = None, console: Console | None = None) -> tuple[Path, dict]:
    """Check and build everything, then make the run directory (a failed start leaves nothing behind)."""
    console = console or Console(stderr=True)
    if out:
        runs.check_new_run_dir(Path(out).expanduser())  # before minutes of loading, again when it is made
    trainer = Trainer(cfg)
    trainer.run_dir = runs.new_run_dir(cfg, out)
    try:
        write_config(trainer)
    except BaseException:
        shutil.rmtree(trainer.run_dir, ignore_errors=True)
        raise
    return trainer.run_dir, _run(trainer, console)


def resume(run_dir: str, console: Console | None = None) -> tuple[Path, dict]:
    console = console or Console(stderr=True)
    run = Path(run_dir)
    cfg, _ = runs.load_run_config(run)
    previous = runs.read_summary(run)
    if previous and previous.get("status") in FINISHED:
        return run, previous
    if previous and previous.get("status") == "non-finite-loss":
        raise TxkitError(f"{run} stopped on a non-finite loss; resuming would repeat it: train a new run with a "
                         f"lower `lr`")
    saved = read_checkpoint(run)
    if saved is None:  # nothing was committed before the interruption: start over with the initial weights
        (run / runs.METRICS).unlink(missing_ok=True)
        trainer = Trainer(cfg, run)
    else:
        trainer = Trainer(cfg, run, load_weights=False)
        trainer.load_checkpoint(saved)
    console.print(f"resuming {run} after epoch {trainer.state.epoch}")
    return trainer.run_dir, _run(trainer, console)


def write_config(trainer: Trainer) -> None:
    resolved = {"weights": resolved_weights(trainer.cfg, trainer.strategy), "num_classes": trainer.dataset.num_classes,
                "classes": trainer.dataset.classes, "task": trainer.task, "image_size": trainer.size,
                "stages": trainer.net.stage_names(), "phases": [p.__dict__ for p in trainer.strategy.phases],
                "train_images": len(trainer.train_data), "val_images": len(trainer.val_data),
                "class_weights": trainer.class_weights, "sampler": trainer.cfg.sampler}
    ckpt.write_json(trainer.run_dir / runs.CONFIG,
                    {"config": trainer.cfg.to_dict(), "resolved": resolved, **runs.environment()})


def _run(trainer: Trainer, console: Console) -> dict:
    started = time.perf_counter()
    status = "interrupted"
    try:
        with progress_bar(console) as progress:
            status = trainer.fit(progress)
    except NonFiniteLoss:
        status = "non-finite-loss"
        raise
    except ckpt.WriteError as exc:
        raise TxkitError(f"{exc}; the last good checkpoint (epoch {trainer.state.epoch}) is intact: free space and "
                         f"continue with txkit train --resume {trainer.run_dir}") from None
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted after {trainer.state.epoch} finished epoch(s); continue with: "
                             f"txkit train --resume {trainer.run_dir}") from None
    finally:
        summary = _finish(trainer, status, time.perf_counter() - started)
    return summary


def _finish(trainer: Trainer, status: str, elapsed: float) -> dict:
    """The summary; on a full disk it stays in memory (the checkpoint, not the summary, is what resumes)."""
    test = trainer.test_metrics() if status in FINISHED else None
    summary = engine_summary(trainer, status, elapsed, test)
    try:
        ckpt.write_json(trainer.run_dir / runs.SUMMARY, summary)
    except ckpt.WriteError:
        if status in FINISHED:
            raise
    return summary
