"""Pickle-free tensors: safetensors files written atomically (through :mod:`txkit.storage`), and nested state.

Nested state (optimizer, scheduler, RNG) is split into a JSON tree whose tensor leaves are replaced by
``{"__tensor__": key}`` references into one safetensors file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from txkit.errors import TxkitError
from txkit.storage import WriteError, first_line, umask, writing

__all__ = ["WriteError", "CorruptFileError", "save_tensors", "load_tensors", "tensor_metadata", "split_tensors",
           "join_tensors"]

TENSOR_REF = "__tensor__"
HEADER_BYTES = 128  # about what safetensors' JSON header takes per tensor (for the space a full disk lacks)


class CorruptFileError(TxkitError):
    """A file txkit wrote earlier cannot be read back."""


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    path = Path(path)
    contiguous = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    size = sum(v.numel() * v.element_size() for v in contiguous.values()) + HEADER_BYTES * (1 + len(contiguous))
    with writing(path, size=size) as tmp:
        save_file(contiguous, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~umask())  # safetensors creates its file 0600
        os.replace(tmp, path)


def load_tensors(path: Path, fix: str = "the file is damaged; restore it or train again") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{path}: not found; {fix}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptFileError(f"{path}: not a readable .safetensors file ({first_line(exc)}); {fix}") from None


def tensor_metadata(path: Path) -> dict[str, str]:
    """The metadata of a .safetensors file, read from its header only ({} when unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return {}




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
