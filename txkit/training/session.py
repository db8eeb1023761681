"""A whole training run as the CLI drives it: run directory, progress display, summary."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from txkit.training import checkpoint as ckpt
from txkit.errors import TxkitError
from txkit.training import runs
from txkit.training.build import resolved_weights
from txkit.training.config import TrainConfig
from txkit.training.engine import NonFiniteLoss, Trainer, engine_summary


class RunInterrupted(TxkitError):
    exit_code = 130


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[val]}"),
                    TimeRemainingColumn(), console=console, transient=False,
                    refresh_per_second=2)


def train(cfg: TrainConfig, out: str | None = None, console: Console | None = None) -> tuple[Path, dict]:
    console = console or Console(stderr=True)
    trainer = Trainer(cfg, Path("."), console)  # validates options and data before a run dir exists
    trainer.run_dir = runs.new_run_dir(cfg, out)
    trainer.setup(resume=False)
    write_config(trainer)
    return trainer.run_dir, _run(trainer, console)


def resume(run_dir: str, console: Console | None = None) -> tuple[Path, dict]:
    console = console or Console(stderr=True)
    cfg, _ = runs.load_run_config(run_dir)
    summary_path = Path(run_dir) / runs.SUMMARY
    if summary_path.exists() and ckpt.read_json(summary_path).get("status") in ("completed", "early-stopped"):
        return Path(run_dir), ckpt.restore_floats(ckpt.read_json(summary_path))
    trainer = Trainer(cfg, Path(run_dir), console)
    trainer.setup(resume=True)
    trainer.load_checkpoint()
    if trainer.state.epoch == 0:
        _restart_from_scratch(trainer)
    console.print(f"resuming {run_dir} after epoch {trainer.state.epoch}")
    return trainer.run_dir, _run(trainer, console)


def _restart_from_scratch(trainer: Trainer) -> None:
    """Nothing finished before the interruption: rebuild with the run's initial weights."""
    (trainer.run_dir / runs.METRICS).unlink(missing_ok=True)
    trainer.setup(resume=False)


def write_config(trainer: Trainer) -> None:
    resolved = {"weights": resolved_weights(trainer.cfg, trainer.strategy), "num_classes": trainer.dataset.num_classes,
                "classes": trainer.dataset.classes, "task": trainer.task, "image_size": trainer.size,
                "stages": trainer.net.stage_names(), "phases": [p.__dict__ for p in trainer.strategy.phases],
                "train_images": len(trainer.train_data), "val_images": len(trainer.val_data)}
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
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted after {trainer.state.epoch} finished epoch(s); continue with: "
                             f"txkit train --resume {trainer.run_dir}") from None
    finally:
        elapsed = time.perf_counter() - started
        test = trainer.test_metrics() if status in ("completed", "early-stopped") else None
        summary = engine_summary(trainer, status, elapsed, test)
        ckpt.write_json(trainer.run_dir / runs.SUMMARY, summary)
    return summary
