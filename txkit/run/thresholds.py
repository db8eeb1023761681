"""Operating points of a finished run: per-class decision thresholds on its probabilities, chosen on its
validation split (never on test) by a rule, stored as RUN/thresholds.json and read back by ``txkit predict``.

Rules (``--threshold``): ``youden``, ``f1``, ``sensitivity=S`` and ``specificity=S`` with S strictly between 0
and 1 (the choice: :mod:`txkit.stats.operating`), or a probability P in (0, 1), the same fixed threshold for
every class (nothing is fitted). The thresholds apply to the raw probabilities (softmax or sigmoid of the logits,
before any temperature of calibration.json).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from txkit.errors import TxkitError
from txkit.stats.operating import choose_threshold, class_truth
from txkit.stats.scores import probabilities

TARGETS = ("sensitivity", "specificity")
SCORE = "probability: softmax (multiclass) or sigmoid (multilabel) of the logits, before any temperature"
EXAMPLES = "youden, f1, sensitivity=0.9, specificity=0.95 or a probability such as 0.5"


@dataclass(frozen=True)
class ThresholdSpec:
    """A parsed ``--threshold``: ``rule`` (youden, f1, sensitivity, specificity or fixed) and its ``target``."""

    rule: str
    target: float | None = None

    @property
    def text(self) -> str:
        if self.rule == "fixed":
            return f"{self.target:g}"
        return self.rule if self.target is None else f"{self.rule}={self.target:g}"

    @property
    def fitted(self) -> bool:
        """Whether the thresholds are chosen on the validation split (every rule but a fixed probability)."""
        return self.rule != "fixed"


def parse_threshold(value) -> ThresholdSpec:
    """``youden``, ``f1``, ``sensitivity=0.9``, ``specificity=0.95`` or ``0.5``; one line naming `threshold`."""
    if isinstance(value, ThresholdSpec):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TxkitError(f"`threshold` must be {EXAMPLES}, got {type(value).__name__} {value!r}")
    text = str(value).strip().lower()
    if text in ("youden", "f1"):
        return ThresholdSpec(text)
    name, sep, number = text.partition("=")
    name = name.strip()
    if name in TARGETS:
        target = _number(number)
        if target is None:
            raise TxkitError(f"`threshold` {value}: {name} needs a number, e.g. {name}=0.9; use {EXAMPLES}")
        if not 0 < target < 1:
            raise TxkitError(f"`threshold` {value}: the target {name} must lie strictly between 0 and 1, e.g. "
                             f"{name}=0.9")
        return ThresholdSpec(name, target)
    target = None if sep else _number(text)
    if target is None:
        raise TxkitError(f"`threshold` {value}: not a threshold rule; use {EXAMPLES}")
    if not 0 < target < 1:
        raise TxkitError(f"`threshold` {value}: a fixed threshold is a probability strictly between 0 and 1, e.g. "
                         f"0.5; or use youden, f1, sensitivity=0.9 or specificity=0.95")
    return ThresholdSpec("fixed", target)


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def thresholds_record(spec: ThresholdSpec, classes: list[str], task: str, y_true=None, logits=None) -> dict:
    """The thresholds.json record: a fixed threshold for every class, or each class's threshold chosen by
    ``spec`` on the given validation labels and logits (with its validation sensitivity and specificity)."""
    record = {"rule": spec.text, "fitted_on": "val" if spec.fitted else None, "score": SCORE, "task": task}
    if not spec.fitted:
        return {**record, "n": None, "classes": {c: {"threshold": spec.target} for c in classes}}
    probs = probabilities(np.asarray(logits, dtype=np.float64), task)
    chosen = {}
    for k, name in enumerate(classes):
        positive, known = class_truth(y_true, task, k)
        chosen[name] = choose_threshold(positive[known], probs[known, k], spec.rule, spec.target)
    return {**record, "n": int(len(y_true)), "classes": chosen}


def threshold_values(record: dict, classes: list[str]) -> list[float]:
    """The thresholds of ``record`` in class order (NaN for a class without one)."""
    return [float(record["classes"][c]["threshold"]) for c in classes]


def decisions(probs: np.ndarray, record: dict, classes: list[str]) -> list[dict]:
    """Per image, {class: True/False (probability >= the class's threshold), None without a threshold}."""
    values = threshold_values(record, classes)
    return [{c: (None if np.isnan(t) else bool(p >= t)) for c, p, t in zip(classes, row, values)}
            for row in np.atleast_2d(probs)]


def check_val(dataset) -> None:
    """Thresholds are chosen on the val split: one line when the run's dataset has none."""
    if len(dataset.splits.get("val", ())) == 0:
        raise TxkitError(f"`threshold`: the run's dataset ({dataset.name}) has no validation images, and thresholds "
                         f"are chosen on the val split (never on test); give the dataset a val split or use a fixed "
                         f"probability, e.g. `threshold` 0.5")
