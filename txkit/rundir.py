"""RunDir: a run directory's files, and reading them back, in one place (no torch import).

A run directory holds ``config.json`` (the TrainConfig as given, the resolved values, versions, plugins),
``model.safetensors`` (the best checkpoint), ``metrics.jsonl`` / ``metrics.csv`` (one line per committed
epoch), ``summary.json``, the resumable state ``checkpoint.safetensors`` + ``checkpoint.json``, and, once
a run finished, ``predictions_test.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path

from txkit.errors import TxkitError

REPAIR = "restore it or train the run again"


class NotARunError(TxkitError):
    """A folder that is not (or no longer) a readable txkit run directory."""


class RunDir:
    CONFIG = "config.json"
    WEIGHTS = "model.safetensors"
    METRICS = "metrics.jsonl"
    METRICS_CSV = "metrics.csv"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.safetensors"
    CHECKPOINT_STATE = "checkpoint.json"
    CALIBRATION = "calibration.json"
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


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSON-lines file (a torn last line, if any, is dropped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(restore_floats(json.loads(line)))
        except json.JSONDecodeError:
            break
    return out


def read_json(path: Path, fix: str):
    """Read a JSON file txkit wrote; a missing, truncated or corrupt one is one line naming it and ``fix``."""
    path = Path(path)
    try:
        return restore_floats(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise NotARunError(f"{path}: not found; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
        raise NotARunError(f"{path}: unreadable ({reason}); {fix}") from None


def restore_floats(obj):
    """JSON has no NaN or infinity: txkit writes them as {"__float__": "nan"}."""
    if isinstance(obj, dict) and set(obj) == {"__float__"}:
        return float(obj["__float__"])
    if isinstance(obj, dict):
        return {k: restore_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore_floats(v) for v in obj]
    return obj
