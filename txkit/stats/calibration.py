"""Calibration: expected calibration error, Brier score, reliability curves and temperature scaling.

* **ECE** (Guo, Pleiss, Sun & Weinberger, "On calibration of modern neural networks", ICML 2017; Naeini et
  al., AAAI 2015): the cases are put into ``n_bins`` (default 15) equal-width confidence bins on [0, 1] and
  ``ECE = sum_b (n_b / N) |acc(b) - conf(b)|``. Bins are closed on the right, ``((b-1)/B, b/B]``, and the
  first also holds 0 — scikit-learn's ``calibration_curve(strategy="uniform")`` binning, so a confidence of
  exactly 1.0 lies in the last bin and one of exactly 0.5 with two bins in the first. Multiclass:
  *top-label* confidence (the largest probability) against whether the arg max is right. Multilabel: per
  label, the predicted probability of the positive class against the observed share of positives on the
  cases whose label is known (NaN ignored), and the ECE is the mean over labels with any known case.
* **Brier score** (Brier, *Monthly Weather Review* 78:1–3, 1950): multiclass, the mean over cases of the sum
  over classes of ``(p_k - 1[y = k])^2`` (range [0, 2]; twice the binary score for two classes); multilabel,
  scikit-learn's binary ``brier_score_loss`` per label on the known cases, averaged over labels.
* **Temperature scaling** (Guo et al. 2017): logits are divided by one scalar ``T > 0`` fitted to minimise
  the negative log-likelihood of a validation split (``scipy.optimize.minimize_scalar`` over ``log T``,
  bounded to T in [0.01, 100]). Dividing by T keeps every arg max and every ranking, so accuracy and AUC are
  unchanged and only the confidences move.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from txkit.stats.scores import check_task

DEFAULT_BINS = 15
TEMPERATURE_BOUNDS = (0.01, 100.0)


def _task(y_true: np.ndarray, probs: np.ndarray, task: str | None) -> str:
    if task is None:
        task = "multiclass" if np.asarray(y_true).ndim == 1 else "multilabel"
    return check_task(task)


def _bin_ids(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, not {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], confidence, side="left")


def _binary_bins(truth: np.ndarray, confidence: np.ndarray, n_bins: int) -> dict:
    """Per bin: count, mean confidence and observed frequency (NaN in empty bins)."""
    ids = _bin_ids(confidence, n_bins)
    count = np.bincount(ids, minlength=n_bins).astype(np.float64)
    conf = np.bincount(ids, weights=confidence, minlength=n_bins)
    hits = np.bincount(ids, weights=truth.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "count": count.astype(int),
                "confidence": np.where(count > 0, conf / np.maximum(count, 1), np.nan),
                "accuracy": np.where(count > 0, hits / np.maximum(count, 1), np.nan)}


def _ece(bins: dict) -> float:
    count = bins["count"]
    total = count.sum()
    if total == 0:
        return float("nan")
    used = count > 0
    return float(np.sum(count[used] / total * np.abs(bins["accuracy"][used] - bins["confidence"][used])))


def _label_cases(y_true: np.ndarray, probs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    y_true = np.asarray(y_true, dtype=np.float64)
    out = []
    for k in range(probs.shape[1]):
        known = ~np.isnan(y_true[:, k])
        out.append((y_true[known, k] >= 0.5, probs[known, k]))
    return out


def reliability_curve(y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS,
                      task: str | None = None) -> dict | list[dict]:
    """The reliability diagram's data: {"edges" (n_bins + 1,), "count", "confidence" (mean per bin),
    "accuracy" (observed frequency per bin)} with NaN in empty bins — multiclass: top-label; multilabel: a
    list with one such dict per label. Non-empty bins equal scikit-learn's ``calibration_curve(...,
    strategy="uniform")`` (prob_pred, prob_true), which reports no counts, hence the own binning."""
    probs = np.asarray(probs, dtype=np.float64)
    if _task(y_true, probs, task) == "multiclass":
        y = np.asarray(y_true).astype(int)
        return _binary_bins(probs.argmax(axis=1) == y, probs.max(axis=1), n_bins)
    return [_binary_bins(t, p, n_bins) for t, p in _label_cases(y_true, probs)]


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS,
                               task: str | None = None) -> float:
    """ECE with ``n_bins`` equal-width bins (see the module docstring for the definition and bin edges).
    ``task`` defaults to multiclass for 1-D ``y_true`` and multilabel for 2-D."""
    curve = reliability_curve(y_true, probs, n_bins, task)
    if isinstance(curve, dict):
        return _ece(curve)
    values = [_ece(c) for c in curve]
    finite = [v for v in values if v == v]
    return float(np.mean(finite)) if finite else float("nan")


def brier_score(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
    """Multiclass: mean over cases of sum over classes of squared error; multilabel: mean over labels of
    scikit-learn's binary brier_score_loss on the known cases."""
    probs = np.asarray(probs, dtype=np.float64)
    if _task(y_true, probs, task) == "multiclass":
        onehot = np.eye(probs.shape[1])[np.asarray(y_true).astype(int)]
        return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
    from sklearn.metrics import brier_score_loss

    values = [float(brier_score_loss(t.astype(int), p, pos_label=1)) for t, p in _label_cases(y_true, probs)
              if len(t)]
    return float(np.mean(values)) if values else float("nan")


def plot_reliability(y_true: np.ndarray, probs: np.ndarray, path: str | Path, title: str, *,
                     n_bins: int = DEFAULT_BINS, task: str | None = None,
                     classes: Sequence[str] | None = None) -> None:
    """Write a reliability diagram as a PNG: observed accuracy (frequency) against mean confidence per bin,
    with the diagonal of perfect calibration, the ECE in the legend and the bin counts below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = np.asarray(probs, dtype=np.float64)
    task = _task(y_true, probs, task)
    curve = reliability_curve(y_true, probs, n_bins, task)
    curves = [("top label", curve)] if isinstance(curve, dict) else \
        list(zip(classes or [f"label {k}" for k in range(len(curve))], curve))
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    centers = (curves[0][1]["edges"][:-1] + curves[0][1]["edges"][1:]) / 2
    width = 1.0 / n_bins / max(len(curves), 1)
    for i, (name, c) in enumerate(curves):
        used = c["count"] > 0
        ax.plot(c["confidence"][used], c["accuracy"][used], "o-", ms=4, label=f"{name} (ECE {_ece(c):.3f})")
        hist.bar(centers - 0.5 / n_bins + (i + 0.5) * width, c["count"], width=width)
    ax.set(ylabel="accuracy" if task == "multiclass" else "observed frequency", title=title, xlim=(0, 1),
           ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="upper left")
    hist.set(xlabel="confidence" if task == "multiclass" else "predicted probability", ylabel="cases")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, task: str) -> float:
    """Mean NLL of the labels under softmax (multiclass) or per-label sigmoid over the known labels
    (multilabel, binary cross-entropy), computed stably from logits."""
    from scipy.special import logsumexp

    logits = np.asarray(logits, dtype=np.float64)
    if check_task(task) == "multiclass":
        y = np.asarray(y_true).astype(int)
        return float(np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]))
    y = np.asarray(y_true, dtype=np.float64)
    known = ~np.isnan(y)
    z, t = logits[known], y[known]
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``logits / temperature`` (a copy; T = 1 returns the logits unchanged)."""
    if not temperature > 0:
        raise ValueError(f"the temperature must be positive, not {temperature}")
    return np.asarray(logits, dtype=np.float64) / float(temperature)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, task: str,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature T minimising the validation NLL of ``logits / T`` (bounded search over log T).
    Fit it on a validation split and apply it to the test split; never fit it on the test split."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits / np.exp(log_t), y_true, task),
                             bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


def calibration_summary(y_true: np.ndarray, logits: np.ndarray, task: str, n_bins: int = DEFAULT_BINS,
                        temperature: float = 1.0) -> dict:
    """{"ece", "brier", "nll", "n_bins", "temperature"} of ``logits / temperature``, for reports."""
    from txkit.stats.scores import probabilities

    scaled = apply_temperature(logits, temperature)
    probs = probabilities(scaled, task)
    return {"ece": expected_calibration_error(y_true, probs, n_bins, task), "brier": brier_score(y_true, probs, task),
            "nll": negative_log_likelihood(scaled, y_true, task), "n_bins": n_bins, "temperature": float(temperature)}
