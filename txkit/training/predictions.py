"""A run's stored predictions of one split: labels, logits, image ids and resampling groups, so reports and
statistics need no model. Plain numpy files (``predictions_{split}.npz``), no pickles; no torch import."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

PREDICTIONS = "predictions_{split}.npz"


def predictions_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / PREDICTIONS.format(split=split)


def resampling_groups(split) -> np.ndarray | None:
    """The units a bootstrap draws for a :class:`~txkit.datasets.base.Split`: its patients (groups), else its
    studies, else None (images)."""
    if split.groups is not None:
        return split.groups
    return split.studies


def save_predictions(run_dir: str | Path, split: str, y_true, logits, ids, groups=None) -> Path:
    """Write ``predictions_{split}.npz`` atomically: ``y_true`` (int labels, or float with NaN for multilabel),
    ``logits`` (N, C) float32, ``ids`` and (when given) ``groups`` as fixed-width unicode arrays."""
    from txkit.training.checkpoint import atomic_write_bytes  # imports torch: only when writing

    y_true, logits = np.asarray(y_true), np.asarray(logits, dtype=np.float32)
    ids = _text(ids)
    if not (len(y_true) == len(logits) == len(ids)):
        raise ValueError(f"{len(y_true)} labels, {len(logits)} logit rows and {len(ids)} ids differ in number")
    arrays = {"y_true": y_true, "logits": logits, "ids": ids}
    if groups is not None:
        arrays["groups"] = _text(groups)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = predictions_path(run_dir, split)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _text(values) -> np.ndarray:
    # str() of every value gives a fixed-width "<U" array; object arrays would need pickles to load.
    return np.array([str(v) for v in values], dtype=str)


def load_predictions(run_dir: str | Path, split: str) -> dict | None:
    """{"y_true", "logits", "ids", "groups" (None when not stored), "classes", "task", "split"} from the run's
    ``predictions_{split}.npz`` and config.json, or None when the run stored no predictions of that split."""
    path = predictions_path(run_dir, split)
    if not path.exists():
        return None
    from txkit.errors import TxkitError

    try:
        with np.load(path, allow_pickle=False) as data:
            out = {"y_true": data["y_true"], "logits": data["logits"].astype(np.float64),
                   "ids": [str(i) for i in data["ids"]],
                   "groups": data["groups"] if "groups" in data.files else None}
    except (OSError, ValueError, KeyError) as exc:
        raise TxkitError(f"{path}: unreadable ({exc}); delete it and run `txkit evaluate {run_dir}` or train "
                         f"again") from None
    resolved = _resolved(Path(run_dir))
    return {**out, "classes": list(resolved["classes"]), "task": resolved["task"], "split": split}


def _resolved(run_dir: Path) -> dict:
    from txkit.rundir import RunDir

    return RunDir(run_dir).resolved()
