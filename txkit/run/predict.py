"""Predictions of a finished run: one split of its dataset (labels, logits, ids, resampling groups), or single
image files, through the run's recorded intensity rule on the inference runtime."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from txkit.data.loader import TensorSplit, cache_settings
from txkit.data.splits import resampling_groups, run_splits
from txkit.datasets.base import TxDataset
from txkit.datasets.intensity import InputCheck, load_file
from txkit.datasets.pixels import as_float
from txkit.errors import TxkitError
from txkit.rundir import load_calibration, load_thresholds
from txkit.run.load import open_run, recorded_rule
from txkit.run.thresholds import check_val, decisions, parse_threshold, threshold_values, thresholds_record
from txkit.stats import apply_temperature
from txkit.training.engine import load_dataset
from txkit.training.metrics import probabilities
from txkit.training.runtime import Runtime


@torch.no_grad()
@torch.no_grad()
def predict_split(run_dir: str | Path, split: str = "test", batch_size: int = 64, *,
                  dataset: TxDataset | None = None, device: str = "auto", num_workers: int | str = "auto",
                  own_dataset: bool | None = None) -> dict:
    """Labels, logits, probabilities, image ids and resampling groups of one split with the run's best
    weights: {"y_true", "logits", "probs", "ids", "groups", "units", "classes", "task", "dataset", "part" (the
    Split)}.

    On the run's own dataset (``dataset`` None, or ``own_dataset``) the split names are the run's: for a run of
    one fold (`folds`) ``train`` and ``val`` are its fold's and ``oof`` its held-out fold
    (:func:`txkit.data.splits.run_splits`).

    The images go through the intensity rule the run recorded (not one fitted again on today's training files)
    at its image size, on the inference runtime: the GPU with loader workers when there is one. Images of a kind
    the run never saw in training (a sample of the split, as the rule's fit sampled the training split) are
    refused or warned about first (``IntensityRule.unseen``): ``dataset`` may be another one than it trained on."""
    loaded = open_run(run_dir)
    if own_dataset is None:
        own_dataset = dataset is None
    if dataset is None:
        dataset = load_dataset(loaded.cfg)
    part = _split(run_splits(dataset, loaded.cfg) if own_dataset else dict(dataset.splits), split, dataset.name)
    InputCheck(loaded.rule).split(part)  # the recorded rule: older runs recorded no sources and are not checked
    data = TensorSplit(part, loaded.image_size, dataset.task, recorded_rule(loaded, dataset),
                       cache_settings(loaded.cfg), label=f"{dataset.name} {split}")
    runtime = Runtime.for_inference(device, num_workers)
    model = runtime.place(loaded.net)
    logits, labels = [], []
    with closing(runtime.loaders(batch_size, seed=0)) as loaders:
        for x, y in loaders.evaluation(data, batch_size):
            logits.append(model(runtime.to_input(x)).float().cpu())
            labels.append(y)
    logits = torch.cat(logits).double().numpy()
    groups = resampling_groups(part)
    units = "images" if groups is None else "patients" if part.groups is not None else "studies"
    return {"y_true": torch.cat(labels).numpy(), "logits": logits, "probs": probabilities(logits, dataset.task),
            "ids": list(part.ids), "groups": groups, "units": units, "classes": dataset.classes,
            "task": dataset.task, "dataset": dataset, "part": part}


@torch.no_grad()
def predict_images(run_dir: str | Path, images: list[str], *, device: str = "auto", threshold=None) -> list[dict]:
    """Per image: the top class and its raw probability, all raw probabilities, and with calibration.json
    also the temperature-scaled ``calibrated_probability`` and ``calibrated_probabilities``. With thresholds
    (the run's thresholds.json, or ``threshold``: a rule chosen now on the val split, or a fixed probability;
    not stored) also ``decisions``: per class, whether the raw probability reaches the class's threshold."""
    spec = parse_threshold(threshold) if threshold is not None else None
    record = load_thresholds(run_dir) if spec is None else None
    loaded = open_run(run_dir)
    classes, task, rule = loaded.classes, loaded.task, loaded.rule  # the rule as fitted on its training split
    check = InputCheck(rule)  # an image of a kind training never saw: refused, or one warning per kind
    check.files(images)
    if spec is not None:
        record = _thresholds_now(run_dir, loaded, spec, device)
    runtime = Runtime.for_inference(device, num_workers=0)
    model = runtime.place(loaded.net)
    calibration = load_calibration(run_dir)
    out = []
    for path in images:
        pixels = load_file(path, loaded.image_size, rule, check=check)
        x = runtime.to_input(torch.from_numpy(as_float(pixels))[None, None])
        logits = model(x).float().cpu().numpy().astype(np.float64)
        probs = probabilities(logits, task)[0]
        top = int(np.argmax(probs))
        entry = {"image": path, "prediction": classes[top], "probability": float(probs[top]),
                 "probabilities": dict(zip(classes, map(float, probs)))}
        if calibration is not None:
            scaled = probabilities(apply_temperature(logits, calibration["temperature"]), task)[0]
            entry.update(calibrated_probability=float(scaled[top]),
                         calibrated_probabilities=dict(zip(classes, map(float, scaled))))
        if record is not None:
            entry.update(decisions=decisions(probs, record, classes)[0], threshold_rule=record["rule"],
                         thresholds=dict(zip(classes, threshold_values(record, classes))))
        out.append(entry)
    return out


def _thresholds_now(run_dir, loaded, spec, device: str) -> dict:
    """``txkit predict --threshold``: the rule's thresholds chosen on the val split now (not stored)."""
    if not spec.fitted:
        return thresholds_record(spec, loaded.classes, loaded.task)
    dataset = load_dataset(loaded.cfg)
    check_val(dataset)
    val = predict_split(run_dir, "val", dataset=dataset, device=device, own_dataset=True)
    return thresholds_record(spec, loaded.classes, loaded.task, val["y_true"], val["logits"])


def _split(splits: dict, split: str, name: str):
    if split not in splits:
        raise TxkitError(f"`split` {split}: the run's dataset ({name}) has no {split!r} split; use one "
                         f"of: {', '.join(splits)}")
    if not len(splits[split]):
        raise TxkitError(f"`split` {split}: the {split} split of {name} is empty; use one of: "
                         f"{', '.join(s for s, part in splits.items() if len(part))}")
    return splits[split]
