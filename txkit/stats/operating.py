"""Operating points: a decision threshold per class, chosen on one split's probabilities, and sensitivity,
specificity, PPV and NPV at it on another split, with bootstrap intervals.

A case is called positive for class k when its probability of k is at least the class's threshold: softmax
one-vs-rest for multiclass, the label's sigmoid for multilabel (cases whose label is unknown, NaN, are left out).
The probabilities are the raw ones (no temperature): thresholds keep their meaning whether or not a run is
calibrated later.

Choosing (:func:`choose_threshold`): the candidates are the distinct scores of the split (a threshold equal to a
score calls that score positive), as scikit-learn's ``roc_curve`` lists them.

* ``youden``: maximise Youden's J = sensitivity + specificity − 1 (Youden 1950);
* ``f1``: maximise F1 = 2TP / (2TP + FP + FN);
* ``sensitivity`` with a target s: the highest threshold whose sensitivity is at least s (the most specific
  one that reaches it);
* ``specificity`` with a target s: the lowest threshold whose specificity is at least s (the most sensitive one
  that reaches it); when even the highest score's threshold misses it, +inf (no case called positive);
* ``fixed``: the given threshold for every class.

Ties in J or F1 go to the highest threshold. A class without positives or without negatives in the split has
no threshold (NaN) and no decisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from txkit.stats.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, percentile_interval
from txkit.stats.resampling import default_strata, make_plan, resample_weights
from txkit.stats.scores import check_task

RULES = ("youden", "f1", "sensitivity", "specificity", "fixed")
OPERATING = ("sensitivity", "specificity", "ppv", "npv")
TOLERANCE = 1e-12  # a sensitivity of 9/10 reaches a target of 0.9 although 9/10 rounds below it


def class_truth(y_true: np.ndarray, task: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positive, known) boolean arrays of class ``k``: one-vs-rest for multiclass, the label for multilabel."""
    y = np.asarray(y_true)
    if check_task(task) == "multiclass":
        positive = y.astype(int) == k
        return positive, np.ones(len(y), dtype=bool)
    column = np.asarray(y[:, k], dtype=np.float64)
    known = ~np.isnan(column)
    return known & (np.nan_to_num(column) >= 0.5), known


def choose_threshold(positive: np.ndarray, scores: np.ndarray, rule: str, target: float | None = None) -> dict:
    """{"threshold", "sensitivity", "specificity", "positives", "negatives"} of the threshold ``rule`` picks on
    these cases (see the module docstring); threshold NaN (with "reason") without positives or negatives."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    out = {"positives": n_pos, "negatives": n_neg}
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    if rule == "fixed":
        threshold = float(target)
    elif not n_pos or not n_neg:
        which = "positive" if not n_pos else "negative"
        return {**out, "threshold": float("nan"), "sensitivity": float("nan"), "specificity": float("nan"),
                "reason": f"no {which} case to choose a threshold on"}
    else:
        threshold = _pick(positive, scores, rule, target, n_pos, n_neg)
    called = scores >= threshold
    sensitivity = float((called & positive).sum() / n_pos) if n_pos else float("nan")
    specificity = float((~called & ~positive).sum() / n_neg) if n_neg else float("nan")
    return {**out, "threshold": threshold, "sensitivity": sensitivity, "specificity": specificity}


def _pick(positive: np.ndarray, scores: np.ndarray, rule: str, target: float | None, n_pos: int,
          n_neg: int) -> float:
    order = np.argsort(-scores, kind="stable")
    ordered, truth = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(ordered) != 0), len(ordered) - 1]  # the last case of each tie block
    thresholds = ordered[last]  # decreasing; threshold j calls every case up to last[j] positive
    tp = np.cumsum(truth)[last].astype(np.float64)
    fp = np.cumsum(~truth)[last].astype(np.float64)
    tpr, fpr = tp / n_pos, fp / n_neg
    if rule == "youden":
        return float(thresholds[int(np.argmax(tpr - fpr))])
    if rule == "f1":
        return float(thresholds[int(np.argmax(2 * tp / (2 * tp + fp + (n_pos - tp))))])
    if rule == "sensitivity":
        return float(thresholds[int(np.argmax(tpr >= target - TOLERANCE))])  # tpr ends at 1: always found
    reached = np.flatnonzero(1 - fpr >= target - TOLERANCE)
    return float(thresholds[reached[-1]]) if len(reached) else float("inf")


def _indicators(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float], task: str) -> np.ndarray:
    """(cases, 4 C) 0/1 columns: TP, FP, FN, TN of each class at its threshold (a NaN threshold: all 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    n, c = probs.shape
    out = np.zeros((n, 4 * c))
    for k, threshold in enumerate(thresholds):
        if not np.isfinite(threshold) and not threshold == np.inf:
            continue
        positive, known = class_truth(y_true, task, k)
        called = probs[:, k] >= threshold
        for i, cell in enumerate((called & positive, called & ~positive, ~called & positive, ~called & ~positive)):
            out[:, i * c + k] = cell & known
    return out


def _ratios(counts: np.ndarray, c: int) -> dict[str, np.ndarray]:
    tp, fp, fn, tn = (counts[..., i * c:(i + 1) * c] for i in range(4))

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn)}


def operating_points(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float], classes: Sequence[str],
                     task: str) -> dict:
    """Per class: {"threshold", "sensitivity", "specificity", "ppv", "npv", "tp", "fp", "fn", "tn"} of these
    cases at the class's threshold (NaN where a ratio has no cases)."""
    c = len(classes)
    counts = _indicators(y_true, probs, thresholds, task).sum(axis=0)
    values = _ratios(counts, c)
    return {name: {"threshold": float(thresholds[k]), **{m: float(values[m][k]) for m in OPERATING},
                   **{cell: int(counts[i * c + k]) for i, cell in enumerate(("tp", "fp", "fn", "tn"))}}
            for k, name in enumerate(classes)}


class OperatingEngine:
    """Sensitivity, specificity, PPV and NPV of every class for a block of resamples given as multiplicities
    (resamples, cases), from TP/FP/FN/TN indicator columns computed once."""

    def __init__(self, y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float], task: str):
        self.indicators = _indicators(y_true, probs, thresholds, task)
        self.n_classes = np.asarray(probs).shape[1]

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return _ratios(np.atleast_2d(weights) @ self.indicators, self.n_classes)


def bootstrap_operating_points(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float],
                               classes: Sequence[str], task: str, *, n_resamples: int = DEFAULT_RESAMPLES,
                               level: float = DEFAULT_LEVEL, seed: int = 0, strata="auto",
                               groups: np.ndarray | None = None) -> dict:
    """Percentile intervals of each class's sensitivity, specificity, PPV and NPV at fixed thresholds, from the
    resamples :func:`~txkit.stats.bootstrap.bootstrap_metrics` draws with the same arguments (stratified by
    class, whole ``groups``); {class: {metric: [low, high]}, "n_valid": {class: {metric: count}}}."""
    engine = OperatingEngine(y_true, probs, thresholds, task)
    plan = make_plan(len(y_true), default_strata(np.asarray(y_true), strata), groups)
    blocks = [engine(w) for w in resample_weights(plan, n_resamples, seed)]
    out: dict = {"n_valid": {}}
    for k, name in enumerate(classes):
        out[name], out["n_valid"][name] = {}, {}
        for m in OPERATING:
            low, high, valid = percentile_interval(np.concatenate([b[m][:, k] for b in blocks]), level)
            out[name][m], out["n_valid"][name][m] = [low, high], valid
    return out
