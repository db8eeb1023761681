"""An epoch's commit in a run directory, and its reading and repair on resume (no Trainer, no training).

Per epoch, :func:`commit` writes, in this order:

1. its line appended to ``metrics.jsonl`` (and ``metrics.csv`` rewritten from it, when asked);
2. the checkpoint tensors to ``checkpoint.safetensors.pending``, with a token in their metadata;
3. ``checkpoint.json`` naming that token: **the commit point**;
4. the rename ``checkpoint.safetensors.pending`` -> ``checkpoint.safetensors``;
5. if the epoch improved, ``model.safetensors`` with metadata ``epoch``.

A crash before 3 leaves the previous commit in force; a crash after it is completed by :func:`read` (the
rename) and :func:`repair` (the best weights). :func:`repair` also drops the metrics lines of an
uncommitted epoch and removes the temporary files a killed process left. Every write is atomic (see
:mod:`txkit.storage`); a failing one is a one-line :class:`~txkit.storage.WriteError` and leaves no
temporary file and no pending tensors behind. Under torchrun only process 0 writes: its caller calls
:func:`commit` and :func:`repair` on process 0 only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from txkit import storage
from txkit.errors import TxkitError
from txkit.rundir import RunDir
from txkit.training import checkpoint as ckpt

PENDING = ".pending"  # the side name of the checkpoint tensors until checkpoint.json commits them
RESUME_FIX = "delete the run directory and train again"

MetricsTable = Callable[[Path], None]  # rewrites metrics.csv from metrics.jsonl (EpochLogs.metrics_table)


class CheckpointError(TxkitError):
    """A run's resumable state is missing or damaged."""


@dataclass
class Committed:
    """The last committed epoch: checkpoint.json as written (``loop``, ``optimizer``, ``scheduler``,
    ``grad_scaler``, ``tensors_token``) and the tensors it names."""

    state: dict
    tensors: dict[str, torch.Tensor]

    @property
    def epoch(self) -> int:
        return self.state["loop"].get("epoch", 0)


def commit(run_dir: Path, epoch: int, metrics_line: dict, tensors: dict[str, torch.Tensor], state: dict,
           best: dict[str, torch.Tensor] | None = None, best_epoch: int | None = None, *,
           metrics_table: MetricsTable | None = None, on_checkpoint: Callable[[], None] | None = None) -> None:
    """Commit epoch ``epoch`` (1-based: the epochs finished once it is committed).

    ``state`` is what checkpoint.json holds besides the token; ``best`` the weights to write as
    model.safetensors (``best_epoch`` in its metadata) when the epoch improved, else None.
    ``on_checkpoint`` is called once the checkpoint tensors are in place, before the best weights.
    """
    run_dir = Path(run_dir)
    storage.append_jsonl(run_dir / RunDir.METRICS, metrics_line)
    if metrics_table is not None:
        metrics_table(run_dir)
    write_checkpoint(run_dir, epoch, tensors, state)
    if on_checkpoint is not None:
        on_checkpoint()
    if best is not None:
        write_best(run_dir, best, best_epoch)


def write_checkpoint(run_dir: Path, epoch: int, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """Tensors first (to a side file), then checkpoint.json naming them by token, then the rename.

    checkpoint.json is the commit point: a crash before it leaves the previous checkpoint in force, a
    crash after it is completed by :func:`read`.
    """
    run_dir = Path(run_dir)
    token = f"{epoch}-{uuid.uuid4().hex}"
    pending = run_dir / (RunDir.CHECKPOINT + PENDING)
    ckpt.save_tensors(pending, tensors, metadata={"token": token})
    try:
        storage.write_json(run_dir / RunDir.CHECKPOINT_STATE, {**state, "tensors_token": token})
    except storage.WriteError:
        pending.unlink(missing_ok=True)  # not committed: the previous checkpoint stays in force
        raise
    os.replace(pending, run_dir / RunDir.CHECKPOINT)


def write_best(run_dir: Path, weights: dict[str, torch.Tensor], epoch: int | None) -> None:
    """model.safetensors: the best weights, with the epoch they come from in the metadata."""
    ckpt.save_tensors(Path(run_dir) / RunDir.WEIGHTS, weights, metadata={"epoch": str(epoch)})


def read(run_dir: Path) -> Committed | None:
    """The committed state and its tensors, or None when no epoch was committed.

    Completes a rename that checkpoint.json committed but a crash interrupted. A damaged or mismatched
    checkpoint is one line naming the file and the fix.
    """
    saved = read_state(run_dir)
    if saved is None:
        return None
    return Committed(saved, ckpt.load_tensors(committed_tensors(run_dir, saved), fix=RESUME_FIX))


def read_state(run_dir: Path) -> dict | None:
    """checkpoint.json, checked; None when no epoch was committed."""
    path = Path(run_dir) / RunDir.CHECKPOINT_STATE
    if not path.exists():
        return None
    saved = storage.read_json(path, RESUME_FIX)
    if not isinstance(saved, dict) or not isinstance(saved.get("loop"), dict) or "optimizer" not in saved:
        raise CheckpointError(f"{path}: incomplete (no loop or optimizer state); {RESUME_FIX}")
    return saved


def committed_tensors(run_dir: Path, saved: dict) -> Path:
    """The tensors file checkpoint.json committed: checkpoint.safetensors, or the pending file a crash left
    just before its rename (then the rename is completed here)."""
    final, pending = Path(run_dir) / RunDir.CHECKPOINT, Path(run_dir) / (RunDir.CHECKPOINT + PENDING)
    token = saved.get("tensors_token")
    if token is None or ckpt.tensor_metadata(final).get("token") == token:
        return final  # runs written before tokens existed have none
    if ckpt.tensor_metadata(pending).get("token") == token:
        os.replace(pending, final)
        return final
    problem = "missing" if not final.exists() else "not the one checkpoint.json committed (damaged or replaced)"
    raise CheckpointError(f"{final}: {problem}; {RESUME_FIX}")


def repair(run_dir: Path, committed_epoch: int, best_epoch: int | None, write_best: Callable[[], None], *,
           metrics_table: MetricsTable | None = None) -> None:
    """Drop metrics lines of an uncommitted epoch, rewrite best weights a crash cut short (``write_best``
    writes the committed epoch's weights), remove stale temporary files and pending tensors.

    Under torchrun only process 0 calls it, before the others read the files.
    """
    run_dir = Path(run_dir)
    lines = storage.read_jsonl(run_dir / RunDir.METRICS)
    kept = [line for line in lines if line.get("epoch", 0) <= committed_epoch]
    if len(kept) != len(lines) or not (run_dir / RunDir.METRICS).exists():
        storage.write_jsonl(run_dir / RunDir.METRICS, kept)
        if metrics_table is not None:
            metrics_table(run_dir)
    # The best weights are written after their epoch's commit; a crash in between leaves them to redo.
    best_now = best_epoch is not None and best_epoch == committed_epoch
    if best_now and ckpt.tensor_metadata(run_dir / RunDir.WEIGHTS).get("epoch") != str(committed_epoch):
        write_best()
    storage.remove_stale_temps(run_dir)
    (run_dir / (RunDir.CHECKPOINT + PENDING)).unlink(missing_ok=True)
