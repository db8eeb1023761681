"""Evaluation of a finished run on a split of its dataset: metrics from logits, confidence intervals
(bootstrap over patients or studies, DeLong for AUCs), calibration, ROC and reliability plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from txkit import rundir
from txkit.errors import TxkitError
from txkit.rundir import load_calibration
from txkit.run.calibrate import ECE_BINS
from txkit.run.predict import predict_split
from txkit.stats import bootstrap_metrics, calibration_summary, delong_per_class, plot_reliability
from txkit.training.metrics import compute_metrics, compute_metrics_from_logits, plot_roc, ranking_scores

DEFAULT_RESAMPLES, DEFAULT_LEVEL = 1000, 0.95


def check_interval_options(bootstrap: int, ci_level: float) -> None:
    """Messages name the options in backticks (txkit.errors.for_cli makes them flags)."""
    if bootstrap < 0:
        raise TxkitError(f"`bootstrap` {bootstrap}: must be 0 (no intervals) or a number of resamples, "
                         f"e.g. `bootstrap` 1000")
    if not 0 < ci_level < 1:
        raise TxkitError(f"`ci_level` {ci_level:g}: must lie strictly between 0 and 1, e.g. `ci_level` 0.95")


def evaluate_run(run_dir: str | Path, split: str = "test", batch_size: int = 64, *,
                 bootstrap: int = DEFAULT_RESAMPLES, ci_level: float = DEFAULT_LEVEL, seed: int = 0,
                 device: str = "auto") -> dict:
    """Metrics of the run's best weights on ``split`` (AUCs from logits), calibration (ECE, Brier, NLL; and
    after the run's temperature when it has calibration.json), ROC and reliability PNGs, and with
    ``bootstrap`` > 0 the ``ci_level`` intervals of every metric under "ci"."""
    check_interval_options(bootstrap, ci_level)
    calibration = load_calibration(run_dir)
    predicted = predict_split(run_dir, split, batch_size, device=device)
    y_true, logits, dataset = predicted["y_true"], predicted["logits"], predicted["dataset"]
    classes, task = dataset.classes, dataset.task
    metrics = compute_metrics_from_logits(y_true, logits, classes, task)
    studies = predicted["part"].studies
    if studies is not None and task == "multiclass":
        metrics["study_level"] = study_metrics(studies, y_true, predicted["probs"], classes)
        metrics["kappa"] = kappa(y_true, predicted["probs"])
    metrics.update(split=split, classes=classes, **_plots(run_dir, split, predicted))
    metrics.update(calibration_metrics(y_true, logits, task))
    if calibration is not None:
        metrics["calibrated"] = calibrated_metrics(y_true, logits, task, calibration)
    if bootstrap:
        metrics["ci"] = confidence_intervals(y_true, logits, classes, task, predicted["groups"], predicted["units"],
                                             n_resamples=bootstrap, level=ci_level, seed=seed)
    return metrics


def _plots(run_dir: str | Path, split: str, predicted: dict) -> dict:
    cfg = rundir.load_run_config(run_dir)[0]
    title = f"{cfg.backbone} / {cfg.strategy} ({split})"
    y_true, probs, task, classes = predicted["y_true"], predicted["probs"], predicted["task"], predicted["classes"]
    roc = Path(run_dir) / f"roc_{split}.png"
    plot_roc(y_true, probs, classes, task, roc, title, scores=ranking_scores(predicted["logits"], task))
    reliability = Path(run_dir) / f"reliability_{split}.png"
    plot_reliability(y_true, probs, reliability, title, n_bins=ECE_BINS, task=task, classes=classes)
    return {"roc_png": str(roc), "reliability_png": str(reliability)}


def calibration_metrics(y_true: np.ndarray, logits: np.ndarray, task: str) -> dict:
    """{"ece", "brier", "nll", "ece_bins"} of the raw probabilities."""
    summary = calibration_summary(y_true, logits, task, ECE_BINS)
    return {"ece": summary["ece"], "brier": summary["brier"], "nll": summary["nll"], "ece_bins": ECE_BINS}


def calibrated_metrics(y_true: np.ndarray, logits: np.ndarray, task: str, calibration: dict) -> dict:
    summary = calibration_summary(y_true, logits, task, ECE_BINS, temperature=calibration["temperature"])
    return {"ece": summary["ece"], "brier": summary["brier"], "nll": summary["nll"],
            "temperature": calibration["temperature"], "fitted_on": calibration.get("fitted_on", "val")}


def confidence_intervals(y_true: np.ndarray, logits: np.ndarray, classes: list[str], task: str,
                         groups: np.ndarray | None, units: str, *, n_resamples: int, level: float,
                         seed: int = 0) -> dict:
    """Bootstrap intervals of every metric (whole ``groups`` drawn when given) and DeLong's AUC intervals."""
    ci = bootstrap_metrics(y_true, logits, classes, task, n_resamples=n_resamples, level=level, seed=seed,
                           groups=groups)
    ci["resampled"] = units
    delong = delong_per_class(y_true, logits, classes, task, level=level)
    ci["delong"] = {"method": delong["method"], "level": level, "auc": [delong["low"], delong["high"]],
                    "per_class": {c: [v["low"], v["high"]] for c, v in delong["per_class"].items()}}
    return ci


def study_metrics(studies: np.ndarray, y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Score each study by the mean probability of its images (the MURA protocol), plus Cohen's kappa."""
    unique, index = np.unique(studies, return_inverse=True)
    study_probs = np.zeros((len(unique), probs.shape[1]))
    np.add.at(study_probs, index, probs)
    study_probs /= np.bincount(index)[:, None]
    study_labels = np.zeros(len(unique), dtype=int)
    study_labels[index] = y_true
    metrics = compute_metrics(study_labels, study_probs, classes, "multiclass")
    metrics["kappa"] = kappa(study_labels, study_probs)
    return metrics


def kappa(y_true: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(y_true.astype(int), probs.argmax(axis=1)))
