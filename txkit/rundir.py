"""RunDir: every file of a run directory, written and read back in one place (no torch import).

A run directory holds ``config.json`` (the TrainConfig as given, the resolved values, versions, plugins),
``model.safetensors`` (the best checkpoint), ``metrics.jsonl`` / ``metrics.csv`` (one line per committed
epoch), ``summary.json``, the resumable state ``checkpoint.safetensors`` + ``checkpoint.json``, and, once
a run finished, ``predictions_test.npz`` (labels, logits, image ids and resampling groups, so reports and
statistics need no model: plain numpy, no pickles). ``calibration.json`` (txkit calibrate) and
``thresholds.json`` (``txkit evaluate --threshold``: per-class decision thresholds chosen on the val split, read
by ``txkit predict``) come later, when asked for.
"""

from __future__ import annotations

import errno
import io
import math
import re
import time
from pathlib import Path

import numpy as np

from txkit.errors import TxkitError
from txkit.storage import NotARunError, atomic_write_bytes, read_json, read_jsonl, write_json

PREDICTIONS = "predictions_{split}.npz"
METADATA_PREFIX = "metadata:"

REPAIR = "restore it or train the run again"


class RunDir:
    CONFIG = "config.json"
    WEIGHTS = "model.safetensors"
    METRICS = "metrics.jsonl"
    METRICS_CSV = "metrics.csv"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.safetensors"
    CHECKPOINT_STATE = "checkpoint.json"
    CALIBRATION = "calibration.json"
    THRESHOLDS = "thresholds.json"
    RESOLVED_KEYS = ("num_classes", "classes", "task", "image_size")  # what evaluate, predict, visualize read

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def is_run(self) -> bool:
        return self.file(self.CONFIG).is_file()

    # --- config.json ----------------------------------------------------------------------------------
    def config_json(self) -> dict:
        """The whole config.json, checked; one line when the folder is not a readable run."""
        if not self.path.is_dir():
            raise NotARunError(f"{self.path}: no such run directory; pass the folder a txkit train run wrote")
        path = self.file(self.CONFIG)
        if not path.exists():
            raise NotARunError(f"{path}: not found; {self.path} is not a txkit run directory")
        data = read_json(path, REPAIR)
        resolved = data.get("resolved") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or \
                not isinstance(resolved, dict) or any(key not in resolved for key in self.RESOLVED_KEYS):
            raise NotARunError(f"{path}: incomplete (no config, or resolved lacks one of "
                               f"{', '.join(self.RESOLVED_KEYS)}); {REPAIR}")
        return data

    def config(self):
        """The run's TrainConfig."""
        from txkit.config import TrainConfig

        data = self.config_json()
        try:
            return TrainConfig.from_dict(data["config"])
        except TxkitError as exc:
            raise NotARunError(f"{self.file(self.CONFIG)}: invalid config ({exc}); {REPAIR}") from None

    def resolved(self) -> dict:
        return self.config_json()["resolved"]

    # --- summary and metrics --------------------------------------------------------------------------
    def summary(self) -> dict | None:
        """summary.json, or None when the run has none yet (a damaged one counts as none: it is rewritten)."""
        path = self.file(self.SUMMARY)
        if not path.exists():
            return None
        try:
            summary = read_json(path, "")
        except TxkitError:
            return None
        return summary if isinstance(summary, dict) else None

    def metrics(self) -> list[dict]:
        """The committed per-epoch lines of metrics.jsonl (a torn last line is dropped)."""
        return read_jsonl(self.file(self.METRICS))

    def status(self) -> str | None:
        summary = self.summary()
        return summary.get("status") if summary else None


# --- creating a run directory ------------------------------------------------------------------------
def new_run_dir(cfg, out: str | None) -> Path:
    if out:
        path = Path(out).expanduser()
        check_new_run_dir(path)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{cfg.dataset}-{cfg.backbone}-{cfg.strategy}")
        base = Path("runs") / f"{stamp}-{slug}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise out_error(path, "cannot create the run directory", exc) from None
    return path


OUT_FIXES = {errno.ENAMETOOLONG: "choose a shorter `out`", errno.EACCES: "choose a folder you may write as `out`",
             errno.EPERM: "choose a folder you may write as `out`",
             errno.EROFS: "choose a folder on a writable file system as `out`",
             errno.ENOSPC: "free space or choose another `out`"}


def out_error(path: Path, doing: str, exc: OSError) -> TxkitError:
    """One line naming `out` for a run directory the file system refuses (a name too long, no permission)."""
    return TxkitError(f"`out` {path}: {doing} ({exc.strerror or exc}); "
                      f"{OUT_FIXES.get(exc.errno, 'choose another `out`')}")


def check_new_run_dir(path: Path) -> None:
    """``--out`` must be a new or empty folder (checked before any work starts)."""
    try:
        _check_new_run_dir(path)
    except OSError as exc:  # a name too long, a folder that may not be read
        raise out_error(path, "cannot be used as a run directory", exc) from None


def _check_new_run_dir(path: Path) -> None:
    if (path / RunDir.CONFIG).exists():
        raise TxkitError(f"`out` {path}: already holds a run; pass --resume {path} to continue it or choose "
                         f"another `out`")
    if path.exists() and not path.is_dir():
        raise TxkitError(f"`out` {path}: is a file, not a folder; choose another `out`")
    if path.is_dir() and any(not p.name.startswith(".") for p in path.iterdir()):
        raise TxkitError(f"`out` {path}: folder exists and is not empty (and is not a txkit run); choose a new "
                         f"or empty folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TxkitError(f"`out` {path}: {parent} is a file, not a folder; choose another `out`")
            break


def load_run_config(run_dir: str | Path) -> tuple:
    """The run's TrainConfig and its whole config.json; one line when the folder is not a readable run."""
    run = RunDir(run_dir)
    return run.config(), run.config_json()


# --- stored predictions ------------------------------------------------------------------------------
def predictions_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / PREDICTIONS.format(split=split)


def save_predictions(run_dir: str | Path, split: str, y_true, logits, ids, groups=None,
                     metadata: dict | None = None) -> Path:
    """Write ``predictions_{split}.npz`` atomically: ``y_true`` (int labels, or float with NaN for multilabel),
    ``logits`` (N, C) float32, ``ids``, (when given) ``groups`` and each ``metadata`` column (stored as
    ``metadata:COLUMN``) as fixed-width unicode arrays."""
    y_true, logits = np.asarray(y_true), np.asarray(logits, dtype=np.float32)
    ids = _text(ids)
    if not (len(y_true) == len(logits) == len(ids)):
        raise ValueError(f"{len(y_true)} labels, {len(logits)} logit rows and {len(ids)} ids differ in number")
    arrays = {"y_true": y_true, "logits": logits, "ids": ids}
    if groups is not None:
        arrays["groups"] = _text(groups)
    for column, values in (metadata or {}).items():
        arrays[f"{METADATA_PREFIX}{column}"] = _text(values)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = predictions_path(run_dir, split)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _text(values) -> np.ndarray:
    # str() of every value gives a fixed-width "<U" array; object arrays would need pickles to load.
    return np.array([str(v) for v in values], dtype=str)


def load_predictions(run_dir: str | Path, split: str) -> dict | None:
    """{"y_true", "logits", "ids", "groups" (None when not stored), "metadata" ({} when none), "classes", "task",
    "split"} from the run's ``predictions_{split}.npz`` and config.json, or None when the run stored no
    predictions of that split."""
    path = predictions_path(run_dir, split)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {"y_true": data["y_true"], "logits": data["logits"].astype(np.float64),
                   "ids": [str(i) for i in data["ids"]],
                   "groups": data["groups"] if "groups" in data.files else None,
                   "metadata": {k[len(METADATA_PREFIX):]: data[k] for k in data.files
                                if k.startswith(METADATA_PREFIX)}}
    except (OSError, ValueError, KeyError) as exc:
        raise TxkitError(f"{path}: unreadable ({exc}); delete it and run `txkit evaluate {run_dir}` or train "
                         f"again") from None
    resolved = RunDir(run_dir).resolved()
    return {**out, "classes": list(resolved["classes"]), "task": resolved["task"], "split": split}


# --- calibration.json (txkit calibrate) -----------------------------------------------------------------
def load_calibration(run_dir: str | Path) -> dict | None:
    """The run's calibration.json, or None when it has none."""
    path = Path(run_dir) / RunDir.CALIBRATION
    if not path.exists():
        return None
    fix = f"delete it or fit it again with txkit calibrate {run_dir}"
    data = read_json(path, fix)
    temperature = data.get("temperature") if isinstance(data, dict) else None
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise TxkitError(f"{path}: no positive temperature; {fix}")
    return data


# --- thresholds.json (txkit evaluate --threshold) -------------------------------------------------------------
def save_thresholds(run_dir: str | Path, record: dict) -> Path:
    """Write the run's decision thresholds atomically: {"rule", "fitted_on", "score", "n", "classes": {class:
    {"threshold", ...}}} (txkit.run.thresholds makes the record)."""
    path = Path(run_dir) / RunDir.THRESHOLDS
    write_json(path, record)
    return path


def load_thresholds(run_dir: str | Path) -> dict | None:
    """The run's thresholds.json, checked against its classes, or None when it has none."""
    path = Path(run_dir) / RunDir.THRESHOLDS
    if not path.exists():
        return None
    fix = f"delete it or choose them again with txkit evaluate {run_dir} --threshold youden"
    data = read_json(path, fix)
    classes = RunDir(run_dir).resolved()["classes"]
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or sorted(entries) != sorted(classes) or not all(
            isinstance(e, dict) and isinstance(e.get("threshold"), (int, float)) and not isinstance(
                e.get("threshold"), bool) for e in entries.values()):
        raise TxkitError(f"{path}: not a threshold per class of the run ({', '.join(classes)}); {fix}")
    return data
