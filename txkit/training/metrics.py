"""Classification metrics with scikit-learn, for multi-class and multi-label tasks, and the ROC plot.

Thresholded metrics (accuracy, precision, recall, F1) come from probabilities; ranking metrics (AUC, ROC
curves) should come from scores that keep their order. Saturated softmax probabilities tie at exactly 1.0
while their complements do not, so a binary run can report two different per-class AUCs (0.601 and 0.500
were seen) where there is one. :func:`compute_metrics_from_logits` therefore takes logits and ranks by
:func:`txkit.stats.scores.ranking_scores`; :func:`compute_metrics` ranks by ``scores`` when given and falls
back to the probabilities otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np

from txkit.stats.scores import probabilities, ranking_scores

__all__ = ["compute_metrics", "compute_metrics_from_logits", "plot_roc", "probabilities", "ranking_scores"]


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str], task: str, *,
                    scores: np.ndarray | None = None) -> dict:
    """Metrics of probabilities ``probs``; AUCs from ``scores`` (ranking scores, e.g. from logits) when given,
    otherwise from ``probs``."""
    ranks = probs if scores is None else scores
    if task == "multilabel":
        return _multilabel(y_true, probs, ranks, classes)
    return _multiclass(y_true.astype(int), probs, ranks, classes)


def compute_metrics_from_logits(y_true: np.ndarray, logits: np.ndarray, classes: list[str], task: str) -> dict:
    """:func:`compute_metrics` of ``probabilities(logits)`` with AUCs from ``ranking_scores(logits)``, so
    saturated probabilities cannot tie; for two classes both per-class AUCs are the same number. Computed in
    float64 whatever the logits' dtype."""
    logits = np.asarray(logits, dtype=np.float64)
    return compute_metrics(y_true, probabilities(logits, task), classes, task, scores=ranking_scores(logits, task))


def _multiclass(y: np.ndarray, probs: np.ndarray, ranks: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    pred = probs.argmax(axis=1)
    p, r, f, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    aucs = [_auc((y == k).astype(int), ranks[:, k]) for k in labels]
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(np.mean(p)), "recall": float(np.mean(r)), "f1": float(np.mean(f)),
        "auc": _mean(aucs),
        "per_class": {c: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                          "auc": aucs[k], "support": int(support[k])} for k, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "n": int(len(y)),
    }


def _multilabel(y: np.ndarray, probs: np.ndarray, ranks: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    per_class, accs = {}, []
    for k, c in enumerate(classes):
        known = ~np.isnan(y[:, k])
        truth, score, rank = y[known, k].astype(int), probs[known, k], ranks[known, k]
        pred = (score >= 0.5).astype(int)
        p, r, f, _ = precision_recall_fscore_support(truth, pred, labels=[0, 1], zero_division=0)
        accs.append(float((pred == truth).mean()) if len(truth) else float("nan"))
        per_class[c] = {"precision": float(p[1]), "recall": float(r[1]), "f1": float(f[1]),
                        "auc": _auc(truth, rank), "support": int(truth.sum()),
                        "confusion_matrix": confusion_matrix(truth, pred, labels=[0, 1]).tolist()}
    mean = lambda key: _mean([v[key] for v in per_class.values()])  # noqa: E731
    return {"accuracy": _mean(accs), "precision": mean("precision"), "recall": mean("recall"),
            "f1": mean("f1"), "auc": mean("auc"), "per_class": per_class, "n": int(len(y))}


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(truth)) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(roc_auc_score(truth, score))


def _mean(values) -> float:
    finite = [v for v in values if v == v]
    return float(np.mean(finite)) if finite else float("nan")


def plot_roc(y_true: np.ndarray, probs: np.ndarray, classes: list[str], task: str, path, title: str, *,
             scores: np.ndarray | None = None) -> None:
    """ROC curve per class (one-vs-rest) as a PNG; ranked by ``scores`` when given (ranking scores from
    logits, which do not tie when probabilities saturate), otherwise by ``probs``."""
    ranks = probs if scores is None else scores
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for k, c in enumerate(classes):
        truth = y_true[:, k] if task == "multilabel" else (y_true == k).astype(float)
        known = ~np.isnan(truth)
        if len(np.unique(truth[known])) < 2:
            continue
        fpr, tpr, _ = roc_curve(truth[known].astype(int), ranks[known, k])
        ax.plot(fpr, tpr, label=f"{c} (AUC {_auc(truth[known].astype(int), ranks[known, k]):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    if ax.get_legend_handles_labels()[0]:  # no curve (a split with one class) has no legend to draw
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
