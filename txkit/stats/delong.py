"""DeLong's nonparametric variance of ROC AUCs, and the test comparing two correlated AUCs.

References
----------
* E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, "Comparing the areas under two or more correlated
  receiver operating characteristic curves: a nonparametric approach", *Biometrics* 44(3):837–845, 1988.
* X. Sun, W. Xu, "Fast implementation of DeLong's algorithm for comparing the areas under correlated
  receiver operating characteristic curves", *IEEE Signal Processing Letters* 21(11):1389–1393, 2014.

With ``m`` positives ``X_i`` and ``n`` negatives ``Y_j`` and ``psi(x, y) = 1 if x > y, 1/2 if x = y, 0``, the
AUC is ``theta = (1/mn) sum_ij psi(X_i, Y_j)``; DeLong's structural components (placement values) are
``V10(X_i) = (1/n) sum_j psi(X_i, Y_j)`` and ``V01(Y_j) = (1/m) sum_i psi(X_i, Y_j)``, and for models r, s
scored on the same cases ``S = S10/m + S01/n`` with ``S10``/``S01`` the sample covariances (divisor m-1, n-1)
of the components. Sun & Xu obtain the components from midranks in O(N log N): with ``T_X``, ``T_Y`` the
midranks within positives and negatives and ``T_Z`` those in the pooled sample,
``V10_i = (T_Z,i - T_X,i)/n`` and ``V01_j = 1 - (T_Z,j - T_Y,j)/m`` — what :func:`_components` does with
``scipy.stats.rankdata``.

Everything here is written with each case's *influence* on the AUC: ``(V10_i - theta)/sqrt(m(m-1))`` for a
positive and ``(V01_j - theta)/sqrt(n(n-1))`` for a negative; the sum over cases of the products of two such
vectors is exactly DeLong's ``S`` entry. For several classes (one-vs-rest) the same sum over the shared cases
estimates the covariance of the per-class AUCs (the empirical covariance of their Hájek projections), which
gives the variance of the macro AUC ``(1/K^2) sum_kl Cov(AUC_k, AUC_l)``; on its diagonal it is the
per-class DeLong variance exactly. A case whose label is unknown (multilabel NaN) has no influence on that
label.

Intervals are Wald intervals ``AUC ± z_(1+level)/2 · sqrt(var)`` clipped to [0, 1], as pROC's
``ci.auc(method="delong")`` does; the two-model test is DeLong's z = (AUC_a - AUC_b) / sqrt(var_a + var_b -
2 cov_ab), two-sided normal p-value (identical models: z = 0, p = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from txkit.stats.scores import check_task, one_vs_rest, ranking_scores


def _components(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs (k,), V10 (k, m) and V01 (k, n) for k score rows on the same binary truth (Sun & Xu midranks)."""
    from scipy.stats import rankdata

    truth = np.asarray(truth).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    x, y = scores[:, truth], scores[:, ~truth]
    m, n = x.shape[1], y.shape[1]
    if m == 0 or n == 0:
        raise ValueError(f"DeLong needs positive and negative cases, got {m} positive and {n} negative")
    tx, ty = rankdata(x, axis=1), rankdata(y, axis=1)
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return auc, v10, v01


def _influence(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and influences (k, N) whose inner products are DeLong's covariance matrix; NaN influences
    when a class has fewer than two cases (no sample variance)."""
    truth = np.asarray(truth).astype(bool)
    auc, v10, v01 = _components(truth, scores)
    m, n = v10.shape[1], v01.shape[1]
    psi = np.full((len(auc), truth.size), np.nan)
    if m > 1 and n > 1:
        psi[:, truth] = (v10 - auc[:, None]) / np.sqrt(m * (m - 1.0))
        psi[:, ~truth] = (v01 - auc[:, None]) / np.sqrt(n * (n - 1.0))
    return auc, psi


def delong_covariance(y_true_binary: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUCs (k,), DeLong covariance matrix (k, k)) of k models scored on the same binary cases."""
    auc, psi = _influence(y_true_binary, np.stack([np.asarray(s, dtype=np.float64) for s in scores]))
    return auc, psi @ psi.T


def _z(level: float) -> float:
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    return float(norm.ppf((1 + level) / 2))


def _wald(value: float, variance: float, level: float, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    half = _z(level) * np.sqrt(variance) if variance == variance else np.nan
    return float(max(lo, value - half)), float(min(hi, value + half))


def delong_auc_ci(y_true_binary: np.ndarray, scores: np.ndarray,
                  level: float = 0.95) -> tuple[float, float, float, float]:
    """(AUC, low, high, variance): the AUC with DeLong's variance and its Wald interval clipped to [0, 1]."""
    auc, cov = delong_covariance(y_true_binary, scores)
    low, high = _wald(float(auc[0]), float(cov[0, 0]), level)
    return float(auc[0]), low, high, float(cov[0, 0])


def _test(difference: float, variance: float, level: float) -> dict:
    from scipy.stats import norm

    if variance > 0:
        z = difference / np.sqrt(variance)
        p = float(2 * norm.sf(abs(z)))
    elif variance == 0 and difference == 0:  # identical rankings
        z, p = 0.0, 1.0
    else:
        z, p = (float("nan"), float("nan")) if variance != variance else (np.sign(difference) * np.inf, 0.0)
    low, high = _wald(difference, variance, level, -1.0, 1.0)
    return {"difference": difference, "variance": float(variance), "z": float(z), "p_value": p,
            "low": low, "high": high}


def delong_test(y_true_binary: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                level: float = 0.95) -> dict:
    """DeLong's test of AUC_a = AUC_b for two models scored on the same cases.

    Returns {"auc_a", "auc_b", "difference" (a - b), "variance" (of the difference), "z", "p_value"
    (two-sided), "low", "high" (Wald interval of the difference), "level", "method"}."""
    auc, cov = delong_covariance(y_true_binary, scores_a, scores_b)
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]),
            **_test(float(auc[0] - auc[1]), max(variance, 0.0) if variance == variance else variance, level),
            "level": level, "method": "DeLong"}


def _class_influences(y_true: np.ndarray, scores: np.ndarray, task: str,
                      scores_kind: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Per class: AUC (C,), influences on all N cases (C, N; 0 where the label is unknown), (n_pos, n_neg)."""
    check_task(task)
    scores = np.asarray(scores, dtype=np.float64)
    rank = ranking_scores(scores, task) if scores_kind == "logits" else scores
    n, c = rank.shape
    aucs, psi, sizes = np.full(c, np.nan), np.zeros((c, n)), []
    y_true = np.asarray(y_true)
    for k, (truth, score) in enumerate(one_vs_rest(y_true, rank, task)):
        pos = int(truth.sum())
        sizes.append((pos, len(truth) - pos))
        if pos == 0 or pos == len(truth):
            continue
        auc, infl = _influence(truth, score)
        aucs[k] = auc[0]
        rows = ~np.isnan(y_true[:, k].astype(np.float64)) if task == "multilabel" else slice(None)
        psi[k, rows] = infl[0]
    return aucs, psi, sizes


def _macro(aucs: np.ndarray, psi: np.ndarray) -> tuple[float, float]:
    defined = np.isfinite(aucs)
    if not defined.any():
        return float("nan"), float("nan")
    weights = defined / defined.sum()
    return float(aucs[defined].mean()), float((weights @ psi) @ (weights @ psi))


def delong_per_class(y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], task: str, *,
                     level: float = 0.95, scores_kind: str = "logits") -> dict:
    """One-vs-rest DeLong AUC, variance and interval for each class, and for the macro AUC (mean of the
    defined per-class AUCs, as in txkit.training.metrics) with the covariance of the per-class AUCs.

    ``y_true``/``scores`` as in :func:`txkit.stats.bootstrap.bootstrap_metrics`. Returns {"auc", "low",
    "high", "variance" (macro), "per_class": {class: {"auc", "low", "high", "variance", "n_positive",
    "n_negative"}}, "level", "method"}; a class without positives or negatives has NaN entries."""
    aucs, psi, sizes = _class_influences(y_true, scores, task, scores_kind)
    if len(classes) != len(aucs):
        raise ValueError(f"{len(classes)} class names for {len(aucs)} score columns")
    per_class = {}
    for k, c in enumerate(classes):
        var = float(psi[k] @ psi[k]) if np.isfinite(aucs[k]) else float("nan")
        low, high = _wald(float(aucs[k]), var, level)
        per_class[c] = {"auc": float(aucs[k]), "low": low, "high": high, "variance": var,
                        "n_positive": sizes[k][0], "n_negative": sizes[k][1]}
    macro, var = _macro(aucs, psi)
    low, high = _wald(macro, var, level)
    return {"auc": macro, "low": low, "high": high, "variance": var, "per_class": per_class, "level": level,
            "method": "DeLong (one-vs-rest)"}


def delong_compare(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, classes: Sequence[str],
                   task: str, *, level: float = 0.95, scores_kind: str = "logits") -> dict:
    """DeLong tests of model a against model b on the same cases, per class (one-vs-rest) and for the macro
    AUC (averaged over the classes defined for both). Returns {"auc_a", "auc_b", "difference", "variance",
    "z", "p_value", "low", "high" (macro), "per_class": {class: the same}, "level", "method"}."""
    auc_a, psi_a, _ = _class_influences(y_true, scores_a, task, scores_kind)
    auc_b, psi_b, _ = _class_influences(y_true, scores_b, task, scores_kind)
    if len(classes) != len(auc_a):
        raise ValueError(f"{len(classes)} class names for {len(auc_a)} score columns")
    per_class = {}
    for k, c in enumerate(classes):
        d = psi_a[k] - psi_b[k]
        per_class[c] = {"auc_a": float(auc_a[k]), "auc_b": float(auc_b[k]),
                        **_test(float(auc_a[k] - auc_b[k]), float(d @ d), level)}
    defined = np.isfinite(auc_a) & np.isfinite(auc_b)  # the same classes: both use the same labels
    if defined.any():
        w = defined / defined.sum()
        macro_a, macro_b = float(auc_a[defined].mean()), float(auc_b[defined].mean())
        d = w @ psi_a - w @ psi_b  # undefined classes have zero influence rows and zero weight
        macro = _test(macro_a - macro_b, float(d @ d), level)
    else:
        macro_a = macro_b = float("nan")
        macro = _test(float("nan"), float("nan"), level)
    return {"auc_a": macro_a, "auc_b": macro_b, **macro, "per_class": per_class, "level": level,
            "method": "DeLong (one-vs-rest)"}
