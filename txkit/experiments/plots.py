"""The report's PNG plots (matplotlib, Agg): metric against training fraction, learning curves, ROC curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FRACTION_PANELS = (("test_accuracy", "test accuracy"), ("test_auc", "test AUC"),
                   ("plateau_loss", "validation loss (p75 of plateau)"))
CURVE_PANELS = (("val_accuracy", "validation accuracy"), ("val_loss", "validation loss"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_plots(out: Path, records: list, rows: list[dict], slopes: list[dict], roc: bool, predictions) -> list[Path]:
    """``predictions(record)``: the run's test predictions (with "scores", ranking scores from logits) or None."""
    written = []
    if len({row["fraction"] for row in rows}) > 1:
        written.append(metric_vs_fraction(out / "metric_vs_fraction.png", rows, slopes))
    for fraction in sorted({r.cell[3] for r in records if r.done}):
        written.append(learning_curves(out / f"learning_curves_r{fraction:g}.png", records, fraction))
    finished = [r for r in records if r.done and math.isfinite(r.test["accuracy"])]  # runs with a test split
    if roc and finished:
        largest = max(r.cell[3] for r in finished)
        written.append(roc_curves(out / f"roc_r{largest:g}.png", [r for r in finished if r.cell[3] == largest],
                                  predictions))
    return written


def _label(strategy: str, colorizer: str | None, backbone: str, show: dict) -> str:
    parts = [strategy]
    if show["colorizer"] and colorizer not in (None, "none"):
        parts.append(f"+ {colorizer}")
    if show["backbone"]:
        parts.append(f"@ {backbone}")
    return " ".join(parts)


def _shown_axes(keys) -> dict:
    keys = list(keys)
    return {"colorizer": len({k[1] for k in keys}) > 1, "backbone": len({k[2] for k in keys}) > 1}


def metric_vs_fraction(path: Path, rows: list[dict], slopes: list[dict]) -> Path:
    """Suzuki et al. Fig. 6: each strategy's mean ± std over seeds at each fraction, with its fitted line."""
    plt = _pyplot()
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["colorizer"], row["backbone"]), []).append(row)
    show = _shown_axes(groups)
    fits = {(s["strategy"], s["colorizer"], s["backbone"], s["metric"]): s for s in slopes}
    fig, axes = plt.subplots(1, len(FRACTION_PANELS), figsize=(5 * len(FRACTION_PANELS), 4.2))
    for ax, (metric, title) in zip(axes, FRACTION_PANELS):
        for key, group in groups.items():
            group = sorted(group, key=lambda r: r["fraction"])
            if not any(math.isfinite(r[f"{metric}_mean"]) for r in group):
                continue  # every run of this strategy failed
            x = [r["fraction"] for r in group]
            mean = [r[f"{metric}_mean"] for r in group]
            std = [0.0 if not math.isfinite(r[f"{metric}_std"]) else r[f"{metric}_std"] for r in group]
            line = ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=_label(*key, show))
            fit = fits.get((*key, metric))
            if fit:
                ax.plot([min(x), max(x)], [fit["A"] * v + fit["b"] for v in (min(x), max(x))], "--",
                        color=line[0].get_color(), lw=0.8)
        ax.set(xlabel="training fraction r", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("mean ± std over seeds; dashed: fit A·r + b", fontsize=9)
    return _save(plt, fig, path)


def learning_curves(path: Path, records: list, fraction: float) -> Path:
    """Validation accuracy and loss per epoch at one fraction: mean over seeds, shaded ± std."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    groups: dict[tuple, list] = {}
    for record in records:
        if record.done and record.cell[3] == fraction:
            groups.setdefault(record.cell[:3], []).append(record)
    show = _shown_axes(groups)
    fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(11, 4.2))
    for ax, (metric, title) in zip(axes, CURVE_PANELS):
        for key, runs in groups.items():
            epochs, mean, std = _mean_curve(runs, metric)
            line, = ax.plot(epochs, mean, marker=".", label=_label(*key, show))
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"learning curves, training fraction r = {fraction:g} (mean ± std over seeds)", fontsize=9)
    return _save(plt, fig, path)


def _mean_curve(runs: list, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over seeds at each epoch that every seed reached (early stopping may shorten some)."""
    length = min(len(r.curve) for r in runs)
    values = np.array([[float(line[metric]) for line in r.curve[:length]] for r in runs], dtype=float)
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(length)
    return np.arange(1, length + 1), values.mean(axis=0), std


def roc_curves(path: Path, records: list, predictions) -> Path:
    """One ROC curve per strategy: the mean over seeds of each seed's curve (TPR interpolated on a common
    FPR grid), shaded ± std; several classes are pooled one-vs-rest (micro-average). Runs are ranked by
    their log-odds (which do not tie where probabilities saturate); runs without predictions are left out."""
    from sklearn.metrics import auc, roc_curve

    plt = _pyplot()
    groups: dict[tuple, list] = {}
    for record in records:
        groups.setdefault(record.cell[:3], []).append(record)
    show = _shown_axes(groups)
    grid = np.linspace(0.0, 1.0, 201)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    pooled = False
    for key, runs in groups.items():
        curves, areas = [], []
        for record in runs:
            predicted = predictions(record)
            if predicted is None:
                continue
            truth, score, several = _one_vs_rest(predicted)
            pooled |= several
            if len(np.unique(truth)) < 2:
                continue
            fpr, tpr, _ = roc_curve(truth, score)
            curves.append(np.interp(grid, fpr, tpr))
            areas.append(auc(fpr, tpr))
        if not curves:
            continue
        mean, std = np.mean(curves, axis=0), np.std(curves, axis=0)
        spread = f" ± {np.std(areas, ddof=1):.3f}" if len(areas) > 1 else ""
        line, = ax.plot(grid, mean, label=f"{_label(*key, show)} (AUC {np.mean(areas):.3f}{spread})")
        ax.fill_between(grid, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color=line.get_color(),
                        alpha=0.15)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    fraction = records[0].cell[3]
    kind = "micro-average one-vs-rest" if pooled else "positive class"
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=f"test ROC, r = {fraction:g} ({kind}; mean ± std over seeds)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, path)


def _one_vs_rest(predicted: dict) -> tuple[np.ndarray, np.ndarray, bool]:
    """Labels and scores for one ROC curve: the positive class of a binary task, else every class pooled.
    Ranking scores (one-vs-rest log-odds, the same increasing function of each class's probability) when
    given, so pooling them ranks as pooling the probabilities does, without saturated ties."""
    y_true = np.asarray(predicted["y_true"])
    scores = np.asarray(predicted["scores"] if "scores" in predicted else predicted["probs"])
    if predicted["task"] == "multilabel":
        known = ~np.isnan(y_true)
        return y_true[known].astype(int), scores[known], True
    if scores.shape[1] == 2:
        return (y_true == 1).astype(int), scores[:, 1], False
    from sklearn.preprocessing import label_binarize

    truth = label_binarize(y_true, classes=list(range(scores.shape[1])))
    return truth.ravel(), scores.ravel(), True


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
