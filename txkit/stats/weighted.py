"""The reported metrics for many resamples at once, each resample given as case multiplicities.

A resample is a vector ``w`` of how often each case occurs; a block of resamples is a matrix ``W``
(resamples × cases). Confusion counts are then matrix products ``W @ indicator`` and the AUC is the weighted
Mann–Whitney statistic over the cases sorted once by score, so a thousand resamples cost a few matrix
products instead of a thousand calls to scikit-learn. With ``W`` a row of ones the results are exactly the
definitions of :mod:`txkit.training.metrics` (tested against it):

* multiclass — prediction = arg max of the softmax; per class precision, recall and F1 with scikit-learn's
  ``zero_division=0`` convention; macro = the mean over all classes; accuracy = the share of correct cases;
  per-class AUC one-vs-rest, macro AUC = the mean of the finite per-class AUCs;
* multilabel — per label on the cases whose label is known (not NaN), prediction = sigmoid ≥ 0.5; accuracy,
  precision, recall, F1 and AUC per label, and each macro value is the mean of the finite per-label values.
"""

from __future__ import annotations

import numpy as np

from txkit.stats.scores import check_task, probabilities, ranking_scores

METRICS = ("accuracy", "precision", "recall", "f1", "auc")
PER_CLASS = ("precision", "recall", "f1", "auc")


def finite_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over ``axis`` of the finite entries; NaN where there are none (no warning)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


class _SortedScore:
    """One class's scores sorted once, with their tie groups, and which cases are positive or negative."""

    def __init__(self, score: np.ndarray, positive: np.ndarray, negative: np.ndarray):
        self.order = np.argsort(score, kind="stable")
        ordered = score[self.order]
        self.starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered) != 0) + 1])
        if len(self.starts) == len(ordered):
            self.starts = None  # no ties: nothing to merge
        self.positive = positive[self.order].astype(np.float64)
        self.negative = negative[self.order].astype(np.float64)

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """Weighted Mann–Whitney AUC for each row of ``weights``: the weighted share of (positive, negative)
        pairs ordered correctly, ties counting one half; NaN for a row without positives or negatives."""
        w = weights[:, self.order]
        pos, neg = w * self.positive, w * self.negative
        if self.starts is not None and pos.shape[1]:
            pos = np.add.reduceat(pos, self.starts, axis=1)
            neg = np.add.reduceat(neg, self.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        pairs = (pos * (below + 0.5 * neg)).sum(axis=1)
        return _ratio(pairs, pos.sum(axis=1) * neg.sum(axis=1), np.nan)


class MetricEngine:
    """Precomputes what does not change between resamples; call it with a block of multiplicities."""

    def __init__(self, y_true: np.ndarray, scores: np.ndarray, task: str, scores_kind: str = "logits",
                 macro_classes=None):
        """``macro_classes``: the class indices the macro values average over (default all): an external dataset
        that lacks some of a run's classes is averaged over the classes it has."""
        check_task(task)
        if scores_kind not in ("logits", "probs"):
            raise ValueError(f"scores_kind must be 'logits' or 'probs', not {scores_kind!r}")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2:
            raise ValueError(f"scores must be (cases, classes), got shape {scores.shape}")
        self.task, self.n, self.n_classes = task, scores.shape[0], scores.shape[1]
        self.macro_classes = None if macro_classes is None else np.asarray(macro_classes, dtype=np.int64)
        if len(y_true) != self.n:
            raise ValueError(f"{len(y_true)} labels for {self.n} score rows")
        probs = probabilities(scores, task) if scores_kind == "logits" else scores
        rank = ranking_scores(scores, task) if scores_kind == "logits" else scores
        if task == "multiclass":
            y = np.asarray(y_true).astype(int)
            pred = probs.argmax(axis=1)
            eye = np.eye(self.n_classes)
            truth = eye[y].astype(bool)
            guess = eye[pred].astype(bool)
            self.indicators = np.concatenate([truth & guess, guess, truth], axis=1).astype(np.float64)
            self.sorted = [_SortedScore(rank[:, k], truth[:, k], ~truth[:, k]) for k in range(self.n_classes)]
        else:
            y = np.asarray(y_true, dtype=np.float64)
            if y.shape != scores.shape:
                raise ValueError(f"multilabel y_true must have the shape of scores, {y.shape} != {scores.shape}")
            known = ~np.isnan(y)
            truth = known & (np.nan_to_num(y) >= 0.5)
            false = known & ~truth
            guess = probs >= 0.5
            self.indicators = np.concatenate([truth & guess, false & guess, truth & ~guess, false & ~guess],
                                             axis=1).astype(np.float64)
            self.sorted = [_SortedScore(rank[:, k], truth[:, k], false[:, k]) for k in range(self.n_classes)]

    def __call__(self, weights: np.ndarray) -> dict:
        """{"accuracy", "precision", "recall", "f1", "auc": (resamples,), "per_class": {"precision", "recall",
        "f1", "auc": (resamples, classes)}} for a (resamples, cases) block of multiplicities."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        counts = weights @ self.indicators
        c = self.n_classes
        if self.task == "multiclass":
            tp, predicted, actual = counts[:, :c], counts[:, c:2 * c], counts[:, 2 * c:]
            precision, recall = _ratio(tp, predicted, 0.0), _ratio(tp, actual, 0.0)
            f1 = _ratio(2 * tp, predicted + actual, 0.0)
            accuracy = _ratio(tp.sum(axis=1), weights.sum(axis=1), np.nan)
            macro = np.mean
        else:
            tp, fp, fn, tn = (counts[:, i * c:(i + 1) * c] for i in range(4))
            precision, recall = _ratio(tp, tp + fp, 0.0), _ratio(tp, tp + fn, 0.0)
            f1 = _ratio(2 * tp, 2 * tp + fp + fn, 0.0)
            accuracy = finite_mean(_ratio(tp + tn, tp + fp + fn + tn, np.nan), axis=1)
            macro = finite_mean
        auc = np.stack([s.auc(weights) for s in self.sorted], axis=1)
        keep = self.macro_classes
        averaged = (lambda v: v) if keep is None else (lambda v: v[:, keep])  # noqa: E731
        return {"accuracy": accuracy, "precision": macro(averaged(precision), axis=1),
                "recall": macro(averaged(recall), axis=1), "f1": macro(averaged(f1), axis=1),
                "auc": finite_mean(averaged(auc), axis=1),
                "per_class": {"precision": precision, "recall": recall, "f1": f1, "auc": auc}}
