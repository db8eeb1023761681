"""Evaluation of a finished run on a split of its dataset, or on an external dataset (:mod:`txkit.run.external`):
metrics from logits, confidence intervals (bootstrap over patients or studies, DeLong for AUCs), calibration,
operating points at per-class thresholds chosen on the validation split (:mod:`txkit.run.thresholds`),
per-subgroup metrics with the largest gap (``by``), and ROC and reliability plots.

Every option is checked, and the datasets built and their images probed, before the network runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from txkit import rundir
from txkit.data.splits import run_splits
from txkit.datasets.base import TxDataset
from txkit.errors import DataError, TxkitError, warn
from txkit.rundir import load_calibration, load_predictions, load_thresholds, save_thresholds
from txkit.run.calibrate import ECE_BINS
from txkit.run.external import ALL, Target, evaluation_advice, external_target
from txkit.run.predict import _split, predict_split
from txkit.run.thresholds import check_val, parse_threshold, threshold_values, thresholds_record
from txkit.stats import (bootstrap_metrics, bootstrap_operating_points, calibration_summary, delong_per_class,
                         operating_points, plot_reliability, subgroup_analysis)
from txkit.training.engine import load_dataset
from txkit.training.metrics import compute_metrics, compute_metrics_from_logits, plot_roc, ranking_scores

DEFAULT_RESAMPLES, DEFAULT_LEVEL = 1000, 0.95


def check_interval_options(bootstrap: int, ci_level: float) -> None:
    """Messages name the options in backticks (txkit.errors.for_cli makes them flags)."""
    if bootstrap < 0:
        raise TxkitError(f"`bootstrap` {bootstrap}: must be 0 (no intervals) or a number of resamples, "
                         f"e.g. `bootstrap` 1000")
    if not 0 < ci_level < 1:
        raise TxkitError(f"`ci_level` {ci_level:g}: must lie strictly between 0 and 1, e.g. `ci_level` 0.95")


def check_by(by) -> list[str]:
    """``by`` as a list of metadata column names: a name, a comma-separated string or a sequence of names."""
    if by is None:
        return []
    items = [by] if isinstance(by, str) else by
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise TxkitError(f"`by` must be a metadata column name such as 'sex' or a list of them, got "
                         f"{type(by).__name__} {by!r}")
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def evaluate_run(run_dir: str | Path, split: str | None = None, batch_size: int = 64, *,
                 bootstrap: int = DEFAULT_RESAMPLES, ci_level: float = DEFAULT_LEVEL, seed: int = 0,
                 device: str = "auto", dataset: str | None = None, data_root=None, data_options: dict | None = None,
                 class_map=None, by=None, threshold=None) -> dict:
    """Metrics of the run's best weights on ``split`` (default test; AUCs from logits), calibration (ECE, Brier,
    NLL; and after the run's temperature when it has calibration.json), ROC and reliability PNGs, and with
    ``bootstrap`` > 0 the ``ci_level`` intervals of every metric under "ci".

    ``dataset`` (with ``data_root``, ``data_options``, ``class_map``): score an external dataset instead, in the
    run's classes (its test split, else all of its images; ``split`` picks one, or ``all``); the result says
    which under "dataset". Without ``dataset``, ``data_options`` are added to the run's recorded dataset options
    (options that add metadata, such as subgroups=sex; ones that move images between splits are refused).
    ``threshold`` (youden, f1, sensitivity=S, specificity=S or a probability): per-class thresholds chosen on
    the run's validation split, stored as RUN/thresholds.json, and sensitivity, specificity, PPV and NPV at them
    under "operating_points" (a run that already has thresholds.json is reported at its thresholds). ``by``
    (metadata columns): per-subgroup metrics and the largest gap under "subgroups"."""
    check_interval_options(bootstrap, ci_level)
    spec = parse_threshold(threshold) if threshold is not None else None
    columns = check_by(by)
    cfg, meta = rundir.load_run_config(run_dir)
    own = None  # the run's own dataset, built at most once
    if dataset is not None:
        resolved = meta["resolved"]
        target = external_target(list(resolved["classes"]), resolved["task"], dataset, data_root, data_options,
                                 class_map, split)
    else:
        own = own_dataset(run_dir, cfg, split, data_root, data_options, class_map)
        target = Target(own, split or "test", splits=run_splits(own, cfg))  # a fold run's train/val/oof
        _split(target.splits, target.split, own.name)  # one line for a split it lacks, before the network loads
    check_columns(target, columns)
    stored = load_thresholds(run_dir) if spec is None else None
    if spec is not None and spec.fitted:
        own = own if own is not None else load_dataset(cfg)
        check_val(own)
    predicted = _predict(run_dir, target, batch_size, device)
    metrics = _metrics(run_dir, target, predicted, bootstrap, ci_level, seed)
    record = stored
    if spec is not None:
        record = _choose(run_dir, spec, own, metrics["classes"], batch_size, device)
    if record is not None:
        metrics["operating_points"] = _operating(run_dir, target, predicted, record, spec is None, bootstrap,
                                                 ci_level, seed)
    if columns:
        thresholds = None if record is None else threshold_values(record, metrics["classes"])
        metrics["subgroups"] = {c: _subgroups(target, predicted, c, thresholds, bootstrap, ci_level, seed)
                                for c in columns}
    return metrics


def own_dataset(run_dir, cfg, split, data_root, data_options, class_map) -> TxDataset:
    """The run's dataset as recorded, with ``data_options`` added; one line for external-only options or
    added options that change which images the run's test split holds."""
    for name, value in (("data_root", data_root), ("class_map", class_map)):
        if value is not None:
            raise TxkitError(f"`{name}` is for an external dataset: give `dataset` NAME too (without it the run's "
                             f"own dataset, as recorded, is evaluated)")
    if split == ALL:
        raise TxkitError(f"`split` {ALL} is for an external dataset (`dataset` NAME): the run's own train and val "
                         f"images are no evidence; use test")
    if not data_options:
        return load_dataset(cfg)
    dataset = load_dataset(cfg.replace(data_options={**cfg.data_options, **data_options}))
    stored = load_predictions(run_dir, "test")
    test = dataset.splits.get("test")
    if stored is not None and test is not None and [str(i) for i in test.ids] != stored["ids"]:
        added = ", ".join(f"{k}={v}" for k, v in data_options.items())
        raise TxkitError(f"`data_options` {added}: with them the run's dataset puts other images in its test "
                         f"split than the run was tested on; add only options that carry metadata (such as "
                         f"subgroups=sex), or score other data with `dataset` NAME")
    return dataset


def check_columns(target: Target, columns: list[str]) -> None:
    """Every ``by`` column is metadata of the evaluated split; one line listing the ones it has."""
    if not columns:
        return
    have = list(target.part.metadata)
    missing = [c for c in columns if c not in have]
    if not missing:
        return
    where = f"the {target.split} split of {target.dataset.name}"
    if have:
        raise TxkitError(f"`by` {missing[0]}: {where} has no such metadata column; it has: {', '.join(have)}")
    hint = ("name the columns with `data_options` subgroups=" + ",".join(columns)
            if target.dataset.name == "csv" else
            "a dataset carries metadata when its splits have it (csv: `data_options` subgroups=...; chexpert and "
            "chestxray14: sex, age, view)")
    raise TxkitError(f"`by` {missing[0]}: {where} carries no per-image metadata; {hint}")


def _predict(run_dir, target: Target, batch_size: int, device: str) -> dict:
    if not target.external:
        return predict_split(run_dir, target.split, batch_size, dataset=target.dataset, device=device,
                             own_dataset=True)
    try:
        return predict_split(run_dir, target.split, batch_size, dataset=target.dataset, device=device)
    except DataError as exc:
        raise evaluation_advice(exc) from None


def _metrics(run_dir, target: Target, predicted: dict, bootstrap: int, ci_level: float, seed: int) -> dict:
    calibration = load_calibration(run_dir)
    y_true, logits, dataset = predicted["y_true"], predicted["logits"], predicted["dataset"]
    classes, task = dataset.classes, dataset.task
    metrics = compute_metrics_from_logits(y_true, logits, classes, task)
    present = None
    if target.absent:
        present = [k for k, c in enumerate(classes) if c not in target.absent]
        macro_over(metrics, classes, present, task)
    studies = predicted["part"].studies
    if studies is not None and task == "multiclass":
        metrics["study_level"] = study_metrics(studies, y_true, predicted["probs"], classes)
        metrics["kappa"] = kappa(y_true, predicted["probs"])
    metrics.update(split=target.split, classes=classes, **_plots(run_dir, target.tag, predicted))
    if target.external:
        metrics["dataset"] = target.source
    metrics.update(calibration_metrics(y_true, logits, task))
    if calibration is not None:
        metrics["calibrated"] = calibrated_metrics(y_true, logits, task, calibration)
    if bootstrap:
        metrics["ci"] = confidence_intervals(y_true, logits, classes, task, predicted["groups"], predicted["units"],
                                             n_resamples=bootstrap, level=ci_level, seed=seed, macro_classes=present)
    return metrics


def macro_over(metrics: dict, classes: list[str], present: list[int], task: str) -> None:
    """Macro precision, recall, F1 and AUC over the ``present`` classes only; the absent ones are marked."""
    kept = [classes[k] for k in present]
    for name in ("precision", "recall", "f1", "auc"):
        values = [metrics["per_class"][c][name] for c in kept]
        finite = [v for v in values if v == v]
        if task == "multiclass" and name != "auc":
            metrics[name] = float(np.mean(values)) if values else float("nan")
        else:
            metrics[name] = float(np.mean(finite)) if finite else float("nan")
    for c in classes:
        metrics["per_class"][c]["absent"] = c not in kept
    metrics["macro_over"] = kept


def _choose(run_dir, spec, own: TxDataset | None, classes: list[str], batch_size: int, device: str) -> dict:
    """Thresholds by ``spec`` (chosen on the run's val split unless fixed), stored as RUN/thresholds.json."""
    task = rundir.RunDir(run_dir).resolved()["task"]
    if spec.fitted:
        val = predict_split(run_dir, "val", batch_size, dataset=own, device=device, own_dataset=True)
        record = thresholds_record(spec, classes, task, val["y_true"], val["logits"])
    else:
        record = thresholds_record(spec, classes, task)
    path = save_thresholds(run_dir, record)
    for name, entry in record["classes"].items():
        if entry.get("reason"):
            warn(f"`threshold` {spec.text}: class {name} has no threshold ({entry['reason']} in the val split); "
                 f"no decisions for it")
    return {**record, "path": str(path)}


def _operating(run_dir, target: Target, predicted: dict, record: dict, from_file: bool, bootstrap: int,
               ci_level: float, seed: int) -> dict:
    classes, task = predicted["classes"], predicted["task"]
    values = threshold_values(record, classes)
    y_true, probs = predicted["y_true"], predicted["probs"]
    out = {"rule": record["rule"], "fitted_on": record.get("fitted_on"), "score": record.get("score"),
           "source": str(Path(run_dir) / rundir.RunDir.THRESHOLDS) if from_file else "chosen now",
           "path": str(Path(run_dir) / rundir.RunDir.THRESHOLDS), "split": target.split,
           "thresholds": dict(zip(classes, values)),
           "val": {c: {k: v for k, v in record["classes"][c].items() if k != "threshold"} for c in classes},
           "per_class": operating_points(y_true, probs, values, classes, task)}
    if bootstrap:
        out["ci"] = bootstrap_operating_points(y_true, probs, values, classes, task, n_resamples=bootstrap,
                                               level=ci_level, seed=seed, groups=predicted["groups"])
    return out


def _subgroups(target: Target, predicted: dict, column: str, thresholds, bootstrap: int, ci_level: float,
               seed: int) -> dict:
    classes, task = predicted["classes"], predicted["task"]
    present = [k for k, c in enumerate(classes) if c not in target.absent] if target.absent else None
    result = subgroup_analysis(predicted["y_true"], predicted["logits"], classes, task, target.part.metadata[column],
                               groups=predicted["groups"], thresholds=thresholds, n_resamples=bootstrap,
                               level=ci_level, seed=seed, macro_classes=present)
    warnings = []
    for name, entry in result["subgroups"].items():
        if entry["too_small"] and bootstrap:
            warnings.append(f"`by` {column}: subgroup {name} ({entry['n']} images) is too small for an interval: "
                            f"{entry['too_small']}; its intervals are left out and it takes no part in the gap")
    for metric, gap in result["gaps"].items():
        if gap.get("reason") and bootstrap and metric in ("accuracy", "auc"):
            warnings.append(f"`by` {column}: no interval for the {metric} gap: {gap['reason']}")
    for line in warnings:
        warn(line)
    result["warnings"] = warnings
    result["column"] = column
    return result


def _plots(run_dir: str | Path, split: str, predicted: dict) -> dict:
    """roc_SPLIT.png and reliability_SPLIT.png in the run directory (SPLIT: external-NAME-SPLIT for an external
    dataset)."""
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
                         seed: int = 0, macro_classes=None) -> dict:
    """Bootstrap intervals of every metric (whole ``groups`` drawn when given) and DeLong's AUC intervals;
    ``macro_classes``: the classes the macro values average over (default all)."""
    ci = bootstrap_metrics(y_true, logits, classes, task, n_resamples=n_resamples, level=level, seed=seed,
                           groups=groups, macro_classes=macro_classes)
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
