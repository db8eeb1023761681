"""What ``txkit data info`` reports about any TxDataset: per split the number of images, patients and positive
labels (after the dataset's label policy), plus image-size statistics on a small seeded sample of images, and per
split intensity statistics (min, max, unit, DICOM modalities and photometric interpretations) on up to
``intensity_sample`` (default 200) evenly spaced images of the split, all of them when the split is smaller.
Values are in the images' own units: modality units for DICOM ("HU" for CT), the stored values for 16-bit images,
the 8-bit grey otherwise (also for datasets whose ids are not file paths, e.g. medmnist).

Counts come from the labels alone, so they cost nothing even for CheXpert's 223,414 rows; only the sampled
images are opened. For multi-label data a label counts as positive when it is >= 0.5; NaN labels (ignored in the
loss, e.g. CheXpert U-Ignore) are reported as ``ignored`` and soft labels in (0, 1) as ``soft``. A split with
per-image metadata (``Split.metadata``) also gets the images of each subgroup under ``metadata``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from txkit.datasets.base import Split, TxDataset
from txkit.errors import DataError

SAMPLE_SEED = 0
INTENSITY_SAMPLE = 200


def dataset_info(dataset: TxDataset, sample: int = 32, intensity_sample: int = INTENSITY_SAMPLE) -> dict:
    intensity = {name: intensity_stats(split, intensity_sample) for name, split in dataset.splits.items()}
    return {
        "dataset": dataset.name,
        "task": dataset.task,
        "classes": list(dataset.classes),
        "description": dataset.description,
        "splits": {name: split_info(split, dataset) for name, split in dataset.splits.items()},
        "image_size": image_size_stats(dataset, sample),
        "intensity": intensity,
        "warnings": intensity_warnings(intensity),
        "info": plain(dataset.info),
    }


def intensity_stats(split: Split, sample: int = INTENSITY_SAMPLE) -> dict:
    """Min and max over up to ``sample`` evenly spaced images of one split, with the units, DICOM modalities and
    photometric interpretations seen (counts); unreadable images are counted, not raised."""
    from collections import Counter

    from txkit.datasets.base import read_intensity

    n = len(split)
    picks = np.unique(np.linspace(0, n - 1, num=min(sample, n)).round().astype(int)) if n and sample > 0 else []
    low, high, units, modalities, photometric, errors = np.inf, -np.inf, Counter(), Counter(), Counter(), []
    for i in picks:
        i = int(i)
        try:
            values, meta = _values(split, i, read_intensity)
        except DataError as exc:
            errors.append(str(exc))
            continue
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
        units[meta["unit"]] += 1
        if meta["modality"]:
            modalities[meta["modality"]] += 1
        if meta["photometric"]:
            photometric[meta["photometric"]] += 1
    stats = {"sampled": len(picks), "unreadable": len(errors)}
    if units:
        stats.update(min=_number(low), max=_number(high),
                     unit=next(iter(units)) if len(units) == 1 else "mixed", units=dict(units))
    if modalities:
        stats["modalities"] = dict(modalities)
    if photometric:
        stats["photometric"] = dict(photometric)
    if errors:
        stats["first_error"] = errors[0]
    return stats


def _values(split: Split, index: int, read) -> tuple[np.ndarray, dict]:
    """Stored values: the split's own reader, else (plugin splits without one) the file its id names when that
    exists, else the 8-bit grey."""
    if getattr(split, "_read", None) is None and split.named and Path(split.ids[index]).is_file():
        return read(split.ids[index])
    return split.values(index)


def intensity_warnings(per_split: dict) -> list[str]:
    """One line per mix over the whole dataset: several DICOM modalities, or several units / bit depths."""
    from collections import Counter

    modalities, units = Counter(), Counter()
    for stats in per_split.values():
        modalities.update(stats.get("modalities", {}))
        units.update(stats.get("units", {}))
    return mix_warnings(modalities, units)


def mix_warnings(modalities, units, where: str = "in the sampled images") -> list[str]:
    """A warning with the counts for several modalities, and one for several units / bit depths (also used when a
    run fits its intensity rule, ``txkit.datasets.intensity``)."""
    warnings = []
    for total, what in ((modalities, "modalities"), (units, "units / bit depths")):
        if len(total) > 1:
            counts = ", ".join(f"{name} {count}" for name, count in total.most_common())
            warnings.append(f"mixed {what} {where} ({counts}); one intensity rule may not fit all")
    return warnings


def _number(value: float):
    return int(value) if float(value).is_integer() else round(float(value), 4)


def split_info(split: Split, dataset: TxDataset) -> dict:
    out = {"images": len(split), "patients": _count_unique(split.groups), "positives": positives(split, dataset)}
    if dataset.task == "multilabel":
        labels = _matrix(split.labels, dataset.num_classes)
        for key, mask in (("ignored", np.isnan(labels)), ("soft", (labels > 0) & (labels < 1))):
            if mask.any():
                out[key] = dict(zip(dataset.classes, map(int, mask.sum(axis=0))))
    if split.studies is not None:
        out["studies"] = _count_unique(split.studies)
        out["study_positives"] = study_positives(split, dataset)
    if split.metadata:  # subgroup sizes, to see before `txkit evaluate --by` which ones can have an interval
        from txkit.stats.subgroups import subgroup_order

        out["metadata"] = {}
        for column, values in split.metadata.items():
            values = np.asarray(values).astype(str)
            out["metadata"][column] = {name: int((values == name).sum()) for name in subgroup_order(values)}
    return out


def positives(split: Split, dataset: TxDataset) -> dict[str, int]:
    """Images per class (single-label) or images with the label >= 0.5 (multi-label)."""
    if dataset.task == "multilabel":
        labels = _matrix(split.labels, dataset.num_classes)
        counts = np.sum(np.nan_to_num(labels, nan=0.0) >= 0.5, axis=0)
    else:
        counts = np.bincount(np.asarray(split.labels, dtype=np.int64).reshape(-1), minlength=dataset.num_classes)
    return dict(zip(dataset.classes, map(int, counts)))


def study_positives(split: Split, dataset: TxDataset) -> dict[str, int]:
    """Studies per class, a study taking the label of its images (MURA labels whole studies)."""
    _, first = np.unique(split.studies, return_index=True)
    return positives(split.subset(first), dataset)


def image_size_stats(dataset: TxDataset, sample: int) -> dict:
    """Height and width over up to ``sample`` images drawn from all splits; unreadable ones are counted."""
    picks = _sample_positions(dataset, sample)
    heights, widths, errors = [], [], []
    for split_name, index in picks:
        try:
            image = dataset.splits[split_name].image(int(index))
        except DataError as exc:
            errors.append(str(exc))
            continue
        heights.append(image.shape[0])
        widths.append(image.shape[1])
    stats = {"sampled": len(picks), "unreadable": len(errors)}
    if heights:
        stats["height"] = _summary(heights)
        stats["width"] = _summary(widths)
    if errors:
        stats["first_error"] = errors[0]
    return stats


def _sample_positions(dataset: TxDataset, sample: int) -> list[tuple[str, int]]:
    sizes = {name: len(split) for name, split in dataset.splits.items()}
    total = sum(sizes.values())
    if sample <= 0 or total == 0:
        return []
    flat = np.sort(np.random.default_rng(SAMPLE_SEED).choice(total, size=min(sample, total), replace=False))
    bounds = np.cumsum([0, *sizes.values()])
    names, positions = list(sizes), []
    for i in flat:
        k = int(np.searchsorted(bounds, i, side="right")) - 1  # the split whose range holds i (skips empty ones)
        positions.append((names[k], int(i - bounds[k])))
    return positions


def _summary(values: list[int]) -> dict:
    return {"min": int(min(values)), "mean": round(float(np.mean(values)), 1), "max": int(max(values))}


def _matrix(labels, num_classes: int) -> np.ndarray:
    return np.asarray(labels, dtype=np.float32).reshape(-1, num_classes)


def _count_unique(values) -> int | None:
    return None if values is None else int(len(np.unique(np.asarray(values).astype(str))))


def plain(value):
    """``dataset.info`` as JSON-ready values (paths, numpy scalars and arrays become str, int, float, lists)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
