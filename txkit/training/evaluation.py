"""Evaluate and predict with a finished run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from txkit.datasets.base import load_gray
from txkit.errors import TxkitError
from txkit.network import TxNet
from txkit.training import checkpoint as ckpt
from txkit.training import runs
from txkit.training.build import build_network, build_strategy
from txkit.training.data import TensorSplit, make_loader, resize_gray
from txkit.training.engine import load_dataset
from txkit.training.metrics import compute_metrics, plot_roc, probabilities


def load_run(run_dir: str | Path) -> tuple[TxNet, dict]:
    """The run's network with its best weights, and its config.json."""
    run = Path(run_dir)
    cfg, meta = runs.load_run_config(run)
    weights = run / runs.WEIGHTS
    if not weights.exists():
        raise TxkitError(f"{weights}: not found; the run has no finished epoch yet (resume it with "
                         f"txkit train --resume {run})")
    net = build_network(cfg, meta["resolved"]["num_classes"], build_strategy(cfg), load_weights=False)
    net.load_state_dict(ckpt.load_tensors(weights))
    return net.eval(), meta


def evaluate_run(run_dir: str | Path, split: str = "test", batch_size: int = 64) -> dict:
    predicted = predict_split(run_dir, split, batch_size)
    y_true, probs, dataset = predicted["y_true"], predicted["probs"], predicted["dataset"]
    cfg = runs.load_run_config(run_dir)[0]
    metrics = compute_metrics(y_true, probs, dataset.classes, dataset.task)
    studies = dataset.split(split).studies
    if studies is not None and dataset.task == "multiclass":
        metrics["study_level"] = study_metrics(studies, y_true, probs, dataset.classes)
        metrics["kappa"] = kappa(y_true, probs)
    roc = Path(run_dir) / f"roc_{split}.png"
    plot_roc(y_true, probs, dataset.classes, dataset.task, roc, f"{cfg.backbone} / {cfg.strategy} ({split})")
    metrics.update(split=split, classes=dataset.classes, roc_png=str(roc))
    return metrics


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


@torch.no_grad()
def predict_images(run_dir: str | Path, images: list[str]) -> list[dict]:
    net, meta = load_run(run_dir)
    resolved = meta["resolved"]
    out = []
    for path in images:
        pixels = resize_gray(load_gray(path, missing="check the path"), resolved["image_size"])
        x = torch.tensor(pixels, dtype=torch.float32).div(255.0)[None, None]
        probs = probabilities(net(x).numpy(), resolved["task"])[0]
        top = int(np.argmax(probs))
        out.append({"image": path, "prediction": resolved["classes"][top], "probability": float(probs[top]),
                    "probabilities": dict(zip(resolved["classes"], map(float, probs)))})
    return out


@torch.no_grad()
def predict_split(run_dir: str | Path, split: str = "test", batch_size: int = 64) -> dict:
    """Labels and predicted probabilities of one split with the run's best weights (for ROC curves across runs)."""
    net, meta = load_run(run_dir)
    cfg, resolved = runs.load_run_config(run_dir)[0], meta["resolved"]
    dataset = load_dataset(cfg)
    data = TensorSplit(dataset.split(split), resolved["image_size"], dataset.task)
    logits, labels = [], []
    for x, y in make_loader(data, batch_size, shuffle=False):
        logits.append(net(x))
        labels.append(y)
    return {"y_true": torch.cat(labels).numpy(), "probs": probabilities(torch.cat(logits).numpy(), dataset.task),
            "classes": dataset.classes, "task": dataset.task, "dataset": dataset}
