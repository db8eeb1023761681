"""Probabilities and order-keeping ranking scores from logits, and the rank-based (Mann–Whitney) AUC.

Why ranking scores: softmax probabilities saturate. With two classes and a logit margin of 40 or more,
``1 + exp(-40)`` rounds to 1 in float64, so the top class's probability is exactly 1.0 for every such image
(ties), while the other class's probability ``exp(-40)`` still differs from image to image. A one-vs-rest AUC
from probabilities then differs between the two classes of a binary task (0.601 vs 0.500 was observed), though
in exact arithmetic both are the same number. Ranking metrics (AUC, ROC curves, DeLong) should therefore be
computed from :func:`ranking_scores`, which never saturate.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Task = Literal["multiclass", "multilabel"]
TASKS = ("multiclass", "multilabel")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    return task


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax over classes (multiclass) or a per-label sigmoid (multilabel), computed stably, in the logits'
    floating dtype (float64 for other input)."""
    logits = np.asarray(logits)
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float64)
    if check_task(task) == "multilabel":
        out = np.empty_like(logits)
        positive = logits >= 0
        out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
        exp = np.exp(logits[~positive])  # no overflow for very negative logits
        out[~positive] = exp / (1.0 + exp)
        return out
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def log_probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """log softmax (multiclass) or log sigmoid (multilabel), computed without rounding the top class to log 1.

    The usual ``z - max - log(sum exp(z - max))`` evaluates ``log(1 + tiny)`` as 0 for a saturated top class;
    here the sum's leading 1 is split off and ``log1p`` of the rest is taken instead.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if check_task(task) == "multilabel":
        return -np.logaddexp(0.0, -logits)
    top = logits.argmax(axis=1)
    shifted = logits - logits[np.arange(len(logits)), top][:, None]
    rest = np.exp(shifted)
    rest[np.arange(len(logits)), top] = 0.0
    return shifted - np.log1p(rest.sum(axis=1, keepdims=True))


def ranking_scores(logits: np.ndarray, task: str) -> np.ndarray:
    """Per-class scores for ranking metrics that keep the order of the true probabilities and never tie by
    saturation: the one-vs-rest log-odds ``log p_k - log(1 - p_k) = z_k - logsumexp_{j != k} z_j``.

    Multilabel: the logits themselves (the log-odds of each sigmoid). Multiclass: the expression above, a
    strictly increasing function of ``p_k`` (and of the log-softmax), so AUCs are those of the probabilities in
    exact arithmetic. It does not saturate at either end, and with two classes the two columns are exactly
    ``z_1 - z_0`` and ``z_0 - z_1``, so both one-vs-rest AUCs are the same number.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if check_task(task) == "multilabel":
        return logits.copy()
    n, c = logits.shape
    if c == 1:
        return np.zeros_like(logits)
    out = np.empty_like(logits)
    for k in range(c):
        others = np.delete(logits, k, axis=1)
        m = others.max(axis=1)
        out[:, k] = logits[:, k] - (m + np.log(np.exp(others - m[:, None]).sum(axis=1)))
    return out


def rank_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann–Whitney statistic ``(R_pos - m(m+1)/2) / (m n)`` with midranks for ties
    (``scipy.stats.rankdata``); NaN unless both classes are present. Equal to sklearn's roc_auc_score."""
    from scipy.stats import rankdata

    truth = np.asarray(truth).astype(bool)
    m = int(truth.sum())
    n = truth.size - m
    if m == 0 or n == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[truth].sum() - m * (m + 1) / 2.0) / (m * n))


def one_vs_rest(y_true: np.ndarray, scores: np.ndarray, task: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each class, (binary truth, score) on the cases whose label is known (multilabel NaN = unknown)."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    out = []
    for k in range(scores.shape[1]):
        if check_task(task) == "multilabel":
            known = ~np.isnan(y_true[:, k].astype(np.float64))
            out.append((y_true[known, k].astype(int), scores[known, k]))
        else:
            out.append(((y_true.astype(int) == k).astype(int), scores[:, k]))
    return out
