"""Evaluate, calibrate and predict with a finished run directory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from txkit.datasets.base import TxDataset
from txkit.datasets.intensity import load_file, run_rule
from txkit.datasets.pixels import as_float
from txkit.errors import TxkitError
from txkit.network import TxNet
from txkit.stats import (apply_temperature, bootstrap_metrics, calibration_summary, delong_per_class,
                         fit_temperature, plot_reliability)
from txkit.training import checkpoint as ckpt
from txkit.training.build import build_network, build_strategy
from txkit.data.loader import TensorSplit, cache_settings, input_rule, make_loader
from txkit.training.engine import load_dataset
from txkit.training.metrics import compute_metrics, compute_metrics_from_logits, plot_roc, probabilities, \
    ranking_scores
from txkit.data.splits import resampling_groups
from txkit import rundir, storage
from txkit.rundir import RunDir

CALIBRATION = "calibration.json"
ECE_BINS = 15
DEFAULT_RESAMPLES, DEFAULT_LEVEL = 1000, 0.95


def load_run(run_dir: str | Path) -> tuple[TxNet, dict]:
    """The run's network with its best weights, and its config.json."""
    run = Path(run_dir)
    cfg, meta = rundir.load_run_config(run)
    weights = run / RunDir.WEIGHTS
    if not weights.exists():
        raise TxkitError(f"{weights}: not found; the run has no finished epoch yet (resume it with "
                         f"txkit train --resume {run})")
    net = build_network(cfg, meta["resolved"]["num_classes"], build_strategy(cfg), load_weights=False)
    net.load_state_dict(ckpt.load_tensors(weights))
    return net.eval(), meta


# ------------------------------------------------------------------------------------------- evaluate

def check_interval_options(bootstrap: int, ci_level: float) -> None:
    """Messages name the options in backticks (txkit.errors.for_cli makes them flags)."""
    if bootstrap < 0:
        raise TxkitError(f"`bootstrap` {bootstrap}: must be 0 (no intervals) or a number of resamples, "
                         f"e.g. `bootstrap` 1000")
    if not 0 < ci_level < 1:
        raise TxkitError(f"`ci_level` {ci_level:g}: must lie strictly between 0 and 1, e.g. `ci_level` 0.95")


def evaluate_run(run_dir: str | Path, split: str = "test", batch_size: int = 64, *,
                 bootstrap: int = DEFAULT_RESAMPLES, ci_level: float = DEFAULT_LEVEL, seed: int = 0) -> dict:
    """Metrics of the run's best weights on ``split`` (AUCs from logits), calibration (ECE, Brier, NLL; and
    after the run's temperature when it has calibration.json), ROC and reliability PNGs, and with
    ``bootstrap`` > 0 the ``ci_level`` intervals of every metric under "ci"."""
    check_interval_options(bootstrap, ci_level)
    calibration = load_calibration(run_dir)
    predicted = predict_split(run_dir, split, batch_size)
    y_true, logits, dataset = predicted["y_true"], predicted["logits"], predicted["dataset"]
    classes, task = dataset.classes, dataset.task
    metrics = compute_metrics_from_logits(y_true, logits, classes, task)
    studies = dataset.split(split).studies
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


# ------------------------------------------------------------------------------------------ calibrate

def calibrate_run(run_dir: str | Path, batch_size: int = 64) -> dict:
    """Fit temperature scaling on the validation split and store it as RUN/calibration.json."""
    run = Path(run_dir)
    dataset = load_dataset(rundir.load_run_config(run)[0])
    if len(dataset.splits.get("val", ())) == 0:
        raise TxkitError(f"{run}: the run's dataset ({dataset.name}) has no validation images; temperature "
                         f"scaling is fitted on the val split (never on test): give the dataset a val split")
    predicted = predict_split(run, "val", batch_size, dataset=dataset)
    y_true, logits, task = predicted["y_true"], predicted["logits"], predicted["task"]
    temperature = fit_temperature(logits, y_true, task)
    before = calibration_summary(y_true, logits, task, ECE_BINS)
    after = calibration_summary(y_true, logits, task, ECE_BINS, temperature=temperature)
    if not after["nll"] <= before["nll"]:  # the bounded search stopped a hair off T = 1: never make it worse
        temperature, after = 1.0, before
    record = {"method": "temperature", "temperature": temperature, "fitted_on": "val", "n": int(len(y_true)),
              "nll_before": before["nll"], "nll_after": after["nll"], "ece_before": before["ece"],
              "ece_after": after["ece"], "ece_bins": ECE_BINS}
    storage.write_json(run / CALIBRATION, record)
    return {**record, "path": str(run / CALIBRATION)}


def load_calibration(run_dir: str | Path) -> dict | None:
    """The run's calibration.json, or None when it has none."""
    path = Path(run_dir) / CALIBRATION
    if not path.exists():
        return None
    fix = f"delete it or fit it again with txkit calibrate {run_dir}"
    data = storage.read_json(path, fix)
    temperature = data.get("temperature") if isinstance(data, dict) else None
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise TxkitError(f"{path}: no positive temperature; {fix}")
    return data


# -------------------------------------------------------------------------------------------- predict

@torch.no_grad()
def predict_images(run_dir: str | Path, images: list[str]) -> list[dict]:
    """Per image: the top class and its raw probability, all raw probabilities, and with calibration.json
    also the temperature-scaled ``calibrated_probability`` and ``calibrated_probabilities``."""
    net, meta = load_run(run_dir)
    resolved = meta["resolved"]
    calibration = load_calibration(run_dir)
    classes, task = resolved["classes"], resolved["task"]
    rule = run_rule(meta)  # the run's intensity rule as fitted on its training split
    out = []
    for path in images:
        pixels = load_file(path, resolved["image_size"], rule)
        x = torch.from_numpy(as_float(pixels))[None, None]
        logits = net(x).numpy().astype(np.float64)
        probs = probabilities(logits, task)[0]
        top = int(np.argmax(probs))
        entry = {"image": path, "prediction": classes[top], "probability": float(probs[top]),
                 "probabilities": dict(zip(classes, map(float, probs)))}
        if calibration is not None:
            scaled = probabilities(apply_temperature(logits, calibration["temperature"]), task)[0]
            entry.update(calibrated_probability=float(scaled[top]),
                         calibrated_probabilities=dict(zip(classes, map(float, scaled))))
        out.append(entry)
    return out


@torch.no_grad()
def predict_split(run_dir: str | Path, split: str = "test", batch_size: int = 64, *,
                  dataset: TxDataset | None = None) -> dict:
    """Labels, logits, probabilities, image ids and resampling groups of one split with the run's best
    weights: {"y_true", "logits", "probs", "ids", "groups", "units", "classes", "task", "dataset"}."""
    net, meta = load_run(run_dir)
    cfg, resolved = rundir.load_run_config(run_dir)[0], meta["resolved"]
    if dataset is None:
        dataset = load_dataset(cfg)
    part = _split(dataset, split)
    data = TensorSplit(part, resolved["image_size"], dataset.task, input_rule(cfg, dataset), cache_settings(cfg),
                       label=f"{dataset.name} {split}")
    logits, labels = [], []
    for x, y in make_loader(data, batch_size, shuffle=False):
        logits.append(net(x))
        labels.append(y)
    logits = torch.cat(logits).double().numpy()
    groups = resampling_groups(part)
    units = "images" if groups is None else "patients" if part.groups is not None else "studies"
    return {"y_true": torch.cat(labels).numpy(), "logits": logits, "probs": probabilities(logits, dataset.task),
            "ids": list(part.ids), "groups": groups, "units": units, "classes": dataset.classes,
            "task": dataset.task, "dataset": dataset}


def _split(dataset: TxDataset, split: str):
    if split not in dataset.splits:
        raise TxkitError(f"`split` {split}: the run's dataset ({dataset.name}) has no {split!r} split; use one "
                         f"of: {', '.join(dataset.splits)}")
    if not len(dataset.splits[split]):
        raise TxkitError(f"`split` {split}: the {split} split of {dataset.name} is empty; use one of: "
                         f"{', '.join(s for s, part in dataset.splits.items() if len(part))}")
    return dataset.splits[split]
