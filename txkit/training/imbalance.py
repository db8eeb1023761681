"""Class imbalance: loss weights (``class_weights``) and a balanced, seeded sampler (``sampler``).

Rules (also in docs/training.md):

- ``class_weights = "balanced"``: multi-class cross-entropy weights ``n / (k * n_c)`` over the training
  split (scikit-learn's ``compute_class_weight("balanced")``); multi-label ``pos_weight = negatives /
  positives`` per label over known (non-NaN) labels, as ``BCEWithLogitsLoss`` expects.
- ``class_weights = FILE``: a JSON file, either ``{"class name": weight, ...}`` naming every class, or a
  list with one weight per class in the dataset's class order. Every weight is a finite number, and > 0 for
  each class the training split holds (multi-label: each label with a positive there); 0 is allowed only for
  a class absent from it. A zero or infinite weight of a present class makes the loss NaN or infinite.
- ``sampler = "balanced"``: every epoch draws as many images as the split holds, with replacement, each
  with probability proportional to ``1 / size of its stratum`` (its class; for multi-label its first
  positive label, or "none"). The draw depends only on (seed, epoch), so runs repeat and resume exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

from txkit.errors import TxkitError
from txkit.data.loader import train_batches

CLASS_WEIGHT_RULES = ("none", "balanced")
SAMPLERS = ("none", "balanced")


def class_weights(rule: str, labels: np.ndarray, classes: list[str], task: str) -> list[float] | None:
    """The per-class loss weights (multi-label: ``pos_weight``) that ``rule`` gives on these labels."""
    if rule in (None, "none"):
        return None
    if rule == "balanced":
        return _balanced(labels, len(classes), task)
    path = Path(rule).expanduser()
    weights = _from_file(path, classes)
    _check_present_classes(path, weights, labels, classes, task)
    return weights


def _balanced(labels: np.ndarray, k: int, task: str) -> list[float]:
    if task == "multilabel":
        known = ~np.isnan(labels)
        positives = np.where(known, labels > 0.5, False).sum(axis=0)
        negatives = known.sum(axis=0) - positives
        return [float(n / p) if p else 1.0 for p, n in zip(positives, negatives)]
    counts = np.bincount(labels.astype(int), minlength=k)
    return [float(len(labels) / (k * c)) if c else 0.0 for c in counts]


def _from_file(path: Path, classes: list[str]) -> list[float]:
    fix = (f"give {{\"class\": weight}} for each of {', '.join(classes)} or a list of {len(classes)} "
           f"numbers, or use none or balanced")
    if not path.is_file():
        raise TxkitError(f"`class_weights` {path}: no such file; use none, balanced or a JSON file ({fix})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise TxkitError(f"`class_weights` {path}: not valid JSON; {fix}") from None
    if isinstance(data, dict):
        missing = [c for c in classes if c not in data]
        extra = [str(c) for c in data if c not in classes]
        if missing or extra:
            raise TxkitError(f"`class_weights` {path}: classes do not match the dataset (missing "
                             f"{', '.join(missing) or '-'}; unknown {', '.join(extra) or '-'}); {fix}")
        data = [data[c] for c in classes]
    if not isinstance(data, list) or len(data) != len(classes) or \
            not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in data):
        raise TxkitError(f"`class_weights` {path}: expected {len(classes)} numbers; {fix}")
    bad = next((i for i, w in enumerate(data) if not _finite(w) or w < 0), None)
    if bad is not None:  # json reads NaN, Infinity and -Infinity
        raise TxkitError(f"`class_weights` {path}: the weight of class {classes[bad]!r} is {_number(data[bad])}; "
                         f"give every class a finite weight > 0 (0 only for a class absent from the training "
                         f"split): fix the file, or use none or balanced")
    return [float(w) for w in data]


def _check_present_classes(path: Path, weights: list[float], labels: np.ndarray, classes: list[str],
                           task: str) -> None:
    """A present class weighted 0 drops its images from the loss; all of them 0 make it 0 / 0 = NaN."""
    if task == "multilabel":
        present = np.where(np.isnan(labels), False, labels > 0.5).any(axis=0)
    else:
        present = np.bincount(labels.astype(int), minlength=len(classes)) > 0
    zero = [c for c, w, p in zip(classes, weights, present) if p and w <= 0]
    if zero:
        names = (f"class {zero[0]!r} has weight 0 but is" if len(zero) == 1 else
                 f"classes {', '.join(map(repr, zero))} have weight 0 but are")
        raise TxkitError(f"`class_weights` {path}: {names} in the training split; give every "
                         f"class the training split holds a finite weight > 0 (fix the file), or use none or "
                         f"balanced")


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


def _number(value) -> str:
    return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN" if value != value else repr(value))


def loss_function(task: str, weights: list[float] | None):
    """Cross-entropy (multi-class) or masked BCE-with-logits (multi-label), weighted when asked."""
    weight = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
    if task == "multilabel":
        return MaskedBCE(weight)
    return torch.nn.CrossEntropyLoss(weight=weight)


class MaskedBCE(torch.nn.Module):
    """BCE-with-logits that ignores NaN targets (CheXpert's U-Ignore), with an optional ``pos_weight``."""

    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(target)
        pos_weight = self.pos_weight.to(logits.device) if self.pos_weight is not None else None
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.nan_to_num(target), reduction="none", pos_weight=pos_weight)
        return (loss * known).sum() / known.sum().clamp(min=1)


def sample_weights(strata: np.ndarray) -> np.ndarray:
    """1 / (size of the stratum) for each image, so every stratum is drawn equally often."""
    _, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


class BalancedBatches(Sampler):
    """One epoch's batches drawn with replacement by ``weights``; the draw depends only on (seed, epoch)."""

    def __init__(self, weights: np.ndarray, batch_size: int, seed: int, epoch: int):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.batch_size, self.seed, self.n = batch_size, seed * 100_003 + epoch, len(weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.multinomial(self.weights, self.n, replacement=True, generator=generator).tolist()
        return iter(train_batches(self.n, self.batch_size, order))

    def __len__(self) -> int:
        return len(train_batches(self.n, self.batch_size))
