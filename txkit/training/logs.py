"""Logs people can watch: ``metrics.csv`` beside ``metrics.jsonl`` (always) and TensorBoard event files
under ``RUN/tensorboard/`` with ``log = "tensorboard"`` (``tensorboard --logdir runs/`` shows every run)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from txkit.errors import TxkitError
from txkit import storage

LOGGERS = ("none", "tensorboard")
METRICS_JSONL, METRICS_CSV, TENSORBOARD_DIR = "metrics.jsonl", "metrics.csv", "tensorboard"
SAMPLE_IMAGES = 16


class EpochLogs:
    def __init__(self, kind: str = "none"):
        if kind not in LOGGERS:
            raise TxkitError(f"`log` must be one of {', '.join(LOGGERS)}, got {kind!r}")
        self.kind, self.writer, self.images_written = kind, None, False
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except ImportError:
                raise TxkitError("`log` tensorboard needs the tensorboard package: pip install "
                                 "'txkit[tensorboard]' (or pip install tensorboard), or use `log` none") from None
            except Exception as exc:  # noqa: BLE001 - a broken install (e.g. a protobuf it does not fit) raises anything
                raise TxkitError(f"`log` tensorboard: the tensorboard package is installed but fails to import "
                                 f"({type(exc).__name__}: {storage.first_line(exc)}); reinstall it (pip install "
                                 f"--force-reinstall tensorboard) or use `log` none") from None

    def metrics_table(self, run_dir: Path) -> None:
        """Rewrite metrics.csv from metrics.jsonl, so both always hold the same committed epochs."""
        rows = storage.read_jsonl(Path(run_dir) / METRICS_JSONL)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "|".join(v) if isinstance(v, list) else v for k, v in row.items()})
        storage.atomic_write_bytes(Path(run_dir) / METRICS_CSV, out.getvalue().encode())

    def open(self, run_dir: Path, epochs_done: int) -> None:
        if self.kind != "tensorboard":
            return
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events of an epoch a crash left uncommitted, so a resume never shows it twice
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=epochs_done + 1)

    def epoch(self, line: dict) -> None:
        if self.writer is None:
            return
        step = line["epoch"]
        for key, value in line.items():
            if key.startswith(("train_", "val_")) and isinstance(value, (int, float)) and math.isfinite(value):
                split, _, name = key.partition("_")
                self.writer.add_scalar(f"{name}/{split}", value, step)
        self.writer.add_scalar("lr", line["lr"], step)
        self.writer.flush()

    def images(self, batch) -> None:
        """A grid of the first training images, once per run (what the network really sees)."""
        if self.writer is None or self.images_written:
            return
        self.writer.add_images("train/inputs", batch[:SAMPLE_IMAGES].detach().float().cpu().clamp(0, 1), 0)
        self.images_written = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
