"""Atomic, torch-free persistence of bytes, JSON and JSON lines: what every file txkit writes goes through.

A write goes to a temporary file beside its target (``.NAME.XXXX.tmp``), is fsynced and renamed, so a crash
leaves the old file or the new one, never half of one; a failure is one line (:class:`WriteError`) and
leaves no temporary file. JSON has no NaN or infinity: they are written as ``{"__float__": "nan"}`` and
restored on reading. Tensors (safetensors) are :mod:`txkit.training.checkpoint`, built on this module.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from txkit.errors import TxkitError

TEMP_SUFFIX = ".tmp"


class NotARunError(TxkitError):
    """A folder that is not (or no longer) a readable txkit run directory."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class WriteError(TxkitError):
    """A file of a run could not be written (disk full, permissions); nothing half-written is left.
    ``no_space``: the disk (or the quota) was full, so freeing space is the fix, not permissions."""

    def __init__(self, message: str, no_space: bool = False):
        super().__init__(message)
        self.no_space = no_space


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    with writing(path, size=len(data)) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    fsync_dir(path.parent)


class writing:
    """A temporary file beside ``path``, removed on any failure; OSError becomes a one-line WriteError, which
    on a full disk names the folder and the ``size`` (bytes) the file needs."""

    def __init__(self, path: Path, size: int | None = None):
        self.path, self.size = Path(path), size

    def __enter__(self) -> str:
        try:
            fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX)
        except OSError as exc:
            raise self._error(exc.strerror or str(exc), exc.errno in NO_SPACE) from None
        os.close(fd)
        os.chmod(self.tmp, 0o666 & ~umask())  # mkstemp makes 0600; a run's files get the usual mode
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        Path(self.tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise self._error(exc.strerror or str(exc), exc.errno in NO_SPACE) from None
        if type(exc).__name__ == "SafetensorError":  # safetensors reports its own I/O errors (a full disk) so
            text = first_line(exc)  # its Rust io::Error, e.g. "Os { code: 28, kind: StorageFull, ... }"
            raise self._error(text, any(word in text for word in SAFETENSORS_NO_SPACE)) from None
        return False

    def _error(self, reason: str, no_space: bool) -> WriteError:
        if not no_space:
            return WriteError(f"{self.path}: cannot write ({reason})")
        return WriteError(f"{self.path}: cannot write ({reason}; {space_needed(self.path.parent, self.size)})",
                          no_space=True)


SAFETENSORS_NO_SPACE = ("StorageFull", "QuotaExceeded", "No space left", "code: 28", "code: 122")


def free_bytes(folder: Path) -> int | None:
    """The bytes an unprivileged process may still write in ``folder`` (statvfs), None when unknown."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def space_needed(folder: Path, size: int | None) -> str:
    """``FOLDER needs 1.2 GiB free for it, 300.0 MiB is free``: the clause a full disk's message ends with."""
    free = free_bytes(folder)
    needs = f"{folder} needs {human_bytes(size)} free for it" if size is not None else f"free space in {folder}"
    return needs + (f", {human_bytes(free)} is free" if free is not None else "")


def reserve(fd: int, size: int) -> None:
    """Give the open file ``fd`` its ``size`` bytes of disk now, so that a full disk is an OSError (ENOSPC)
    here and not a SIGBUS later, when a memory map of the file writes to a page the disk has no room for (the
    page cache reports no error: the kernel kills the process). ``posix_fallocate`` reserves the blocks; where
    the platform or the file system has none, the zeros are written."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
    chunk = bytes(min(size, 16 * 2**20))
    os.lseek(fd, 0, os.SEEK_SET)
    left = size
    while left:
        left -= os.write(fd, chunk[:left])
    os.fsync(fd)


def human_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


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
