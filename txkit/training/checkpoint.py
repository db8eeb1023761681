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
from safetensors.torch import load_file, save_file

TENSOR_REF = "__tensor__"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_json_safe(obj), indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one line; the file is rewritten atomically so a crash never leaves half a line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    atomic_write_bytes(path, old + (json.dumps(_json_safe(obj)) + "\n").encode())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        contiguous = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        save_file(contiguous, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


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


def restore_floats(obj: Any) -> Any:
    if isinstance(obj, dict) and set(obj) == {"__float__"}:
        return float(obj["__float__"])
    if isinstance(obj, dict):
        return {k: restore_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore_floats(v) for v in obj]
    return obj
