"""Atomic, torch-free persistence of bytes, JSON and JSON lines: what every file txkit writes goes through.

A write goes to a temporary file beside its target (``.NAME.XXXX.tmp``), is fsynced and renamed, so a crash
leaves the old file or the new one, never half of one; a failure is one line (:class:`WriteError`) and
leaves no temporary file. JSON has no NaN or infinity: they are written as ``{"__float__": "nan"}`` and
restored on reading. Tensors (safetensors) are :mod:`txkit.training.checkpoint`, built on this module.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from txkit.errors import TxkitError

TEMP_SUFFIX = ".tmp"


class NotARunError(TxkitError):
    """A folder that is not (or no longer) a readable txkit run directory."""


class WriteError(TxkitError):
    """A file of a run could not be written (disk full, permissions); nothing half-written is left."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    with writing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    fsync_dir(path.parent)


class writing:
    """A temporary file beside ``path``, removed on any failure; OSError becomes a one-line WriteError."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> str:
        try:
            fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX)
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        os.close(fd)
        os.chmod(self.tmp, 0o666 & ~umask())  # mkstemp makes 0600; a run's files get the usual mode
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        Path(self.tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        if type(exc).__name__ == "SafetensorError":  # safetensors reports its own I/O errors (a full disk) so
            raise WriteError(f"{self.path}: cannot write ({first_line(exc)})") from None
        return False


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temps(folder: Path) -> list[str]:
    """Temporary files a killed process left behind (never trusted, never read); returns their names.
    Only for a folder no other process is writing (a run directory under its lock)."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(json_safe(obj), indent=2) + "\n").encode())


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one line; the file is rewritten atomically so a crash never leaves half a line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    atomic_write_bytes(path, old + (json.dumps(json_safe(obj)) + "\n").encode())


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(json_safe(r)) + "\n" for r in rows).encode())


def json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not every platform or file system can fsync a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
