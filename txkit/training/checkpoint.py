"""Atomic, pickle-free persistence: tensors go to safetensors, everything else to JSON.

Nested state (optimizer, scheduler, RNG) is split into a JSON tree whose tensor leaves are replaced by
``{"__tensor__": key}`` references into one safetensors file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from txkit.errors import TxkitError
from txkit.rundir import read_jsonl, restore_floats  # noqa: F401 - read_jsonl is used through this module
from txkit.rundir import read_json as read_run_json

TENSOR_REF = "__tensor__"
TEMP_SUFFIX = ".tmp"


class WriteError(TxkitError):
    """A file of a run could not be written (disk full, permissions); nothing half-written is left."""


class CorruptFileError(TxkitError):
    """A file txkit wrote earlier cannot be read back."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    with _writing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


class _writing:
    """A temporary file beside ``path``, removed on any failure; OSError becomes a one-line WriteError."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> str:
        try:
            fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX)
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        os.close(fd)
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a run's files get the usual mode
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        Path(self.tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        if isinstance(exc, SafetensorError):  # safetensors reports its own I/O errors (a full disk) so
            raise WriteError(f"{self.path}: cannot write ({_first_line(exc)})") from None
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temps(folder: Path) -> None:
    """Temporary files a killed process left behind (never trusted, never read)."""
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_json_safe(obj), indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_json_checked(path: Path, fix: str) -> Any:
    """Read a JSON file txkit wrote; a missing, truncated or corrupt one is one line naming it and ``fix``."""
    return read_run_json(path, fix)


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one line; the file is rewritten atomically so a crash never leaves half a line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    atomic_write_bytes(path, old + (json.dumps(_json_safe(obj)) + "\n").encode())


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(_json_safe(r)) + "\n" for r in rows).encode())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    path = Path(path)
    contiguous = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with _writing(path) as tmp:
        save_file(contiguous, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates its file 0600
        os.replace(tmp, path)


def load_tensors(path: Path, fix: str = "the file is damaged; restore it or train again") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{path}: not found; {fix}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptFileError(f"{path}: not a readable .safetensors file ({_first_line(exc)}); {fix}") from None


def tensor_metadata(path: Path) -> dict[str, str]:
    """The metadata of a .safetensors file, read from its header only ({} when unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def split_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references, collecting them in ``out``."""
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
        return {TENSOR_REF: prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_key(k), split_tensors(v, f"{prefix}.{k}", out)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)]
    return obj


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and TENSOR_REF in obj:
        return tensors[obj[TENSOR_REF]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {_unkey(k): join_tensors(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def _key(k):
    # Optimizer state is keyed by int; keep the type through JSON.
    return {"int": k} if isinstance(k, int) else k


def _unkey(k):
    return k["int"] if isinstance(k, dict) else k


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


