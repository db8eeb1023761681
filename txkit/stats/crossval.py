"""Comparing two models over the folds of (repeated) k-fold cross-validation: the corrected resampled t-test.

The plain paired t-test over folds treats the J fold differences as independent, but the folds' training sets
overlap (each pair of folds shares K - 2 of its K - 1 training folds), so the differences are positively
correlated and the plain test's variance is too small: it rejects far more often than its level says
(Dietterich 1998; Nadeau & Bengio 2003). Nadeau and Bengio's correction inflates the variance by the share of
the data held out:

    d_j = metric_A(fold j) - metric_B(fold j),   j = 1..J   (J = K x repeats)
    d̄  = (1/J) Σ d_j,    σ̂² = 1/(J - 1) Σ (d_j - d̄)²
    t  = d̄ / sqrt((1/J + n_test/n_train) · σ̂²)

with n_test the images a fold model is tested on and n_train the images it trains on; t is referred to
Student's t with J - 1 degrees of freedom (two-sided p), and the interval of the mean difference is
d̄ ± t_{J-1, (1+level)/2} · sqrt((1/J + n_test/n_train) · σ̂²). The plain test is the same with the factor 1/J
alone. Over repeated k-fold cross-validation the J = K x R differences of all repeats enter one test (the
"corrected repeated k-fold cv test" of Bouckaert & Frank 2004, who found it the best-calibrated of the tests
they compared).

References: C. Nadeau and Y. Bengio, "Inference for the Generalization Error", Machine Learning 52:239-281, 2003;
R. R. Bouckaert and E. Frank, "Evaluating the Replicability of Significance Tests for Comparing Learning
Algorithms", PAKDD 2004, LNAI 3056:3-12; T. G. Dietterich, "Approximate Statistical Tests for Comparing Supervised
Classification Learning Algorithms", Neural Computation 10:1895-1923, 1998.
"""

from __future__ import annotations

import math

import numpy as np


def corrected_resampled_ttest(differences, n_train: float, n_test: float, level: float = 0.95) -> dict:
    """Nadeau–Bengio corrected resampled t-test of the mean of ``differences`` (one per fold, A − B).

    ``n_train`` and ``n_test``: the images a fold's model trained on and was tested on (means over the folds
    when they differ). Returns {"n_folds" (J), "mean", "std" (σ̂, ddof 1), "correction" (1/J + n_test/n_train),
    "t", "df", "p_value" (two-sided), "low", "high" (the ``level`` interval of the mean difference), "plain_t",
    "plain_p_value" (the uncorrected paired t-test, for comparison), "method"}. Non-finite differences are
    dropped first; with fewer than two left, or differences that do not vary, t and p are NaN (the interval
    then has zero width, or is NaN).
    """
    from scipy.stats import t as student

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    if not (n_train > 0 and n_test > 0):
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    j = len(d)
    out = {"n_folds": j, "mean": float(d.mean()) if j else math.nan, "std": math.nan,
           "correction": (1 / j + n_test / n_train) if j else math.nan, "t": math.nan, "df": j - 1 if j else 0,
           "p_value": math.nan, "low": math.nan, "high": math.nan, "plain_t": math.nan, "plain_p_value": math.nan,
           "n_train": float(n_train), "n_test": float(n_test), "level": level,
           "method": "Nadeau-Bengio corrected resampled t-test"}
    if j < 2:
        return out
    variance = float(d.var(ddof=1))
    out["std"] = math.sqrt(variance)
    half = float(student.ppf((1 + level) / 2, j - 1)) * math.sqrt(out["correction"] * variance)
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    if variance == 0:  # every fold differs by the same amount: no spread to test against
        return out
    for prefix, factor in (("", out["correction"]), ("plain_", 1 / j)):
        t = out["mean"] / math.sqrt(factor * variance)
        out[f"{prefix}t"], out[f"{prefix}p_value"] = t, float(2 * student.sf(abs(t), j - 1))
    return out
