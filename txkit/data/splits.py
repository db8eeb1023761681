"""Which images a run trains, validates and tests on: seeded class-proportional fractions and the checks that
a dataset has the splits a run needs. (k-fold assignment lives here too when it comes.)"""

from __future__ import annotations

import numpy as np

from txkit.datasets.base import Split, TxDataset
from txkit.errors import DataError, TxkitError


def fraction_indices(split: Split, fraction: float, seed: int, task: str) -> np.ndarray:
    """A class-proportional, seeded subset of a split (at least one image per present class)."""
    if not 0 < fraction <= 1:
        raise TxkitError(f"`fraction` must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(len(split))
    strata = split.labels if task == "multiclass" else label_strata(split.labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        keep = max(1, int(round(fraction * len(members))))
        chosen.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(chosen))


def label_strata(labels: np.ndarray) -> np.ndarray:
    # Stratify multi-label data by the first positive label (-1 for none).
    positive = np.nan_to_num(labels, nan=0.0) > 0.5
    return np.where(positive.any(axis=1), positive.argmax(axis=1), -1)


def check_nonempty(dataset: TxDataset, names=("train", "val")) -> None:
    for name in names:
        if name in dataset.splits and len(dataset.splits[name]) == 0:
            raise DataError(f"dataset {dataset.name!r}: the {name} split is empty; check the data root")
    if "train" not in dataset.splits:
        raise DataError(f"dataset {dataset.name!r} has no train split")


def resampling_groups(split) -> np.ndarray | None:
    """The units a bootstrap draws for a :class:`~txkit.datasets.base.Split`: its patients (groups), else its
    studies, else None (images)."""
    if split.groups is not None:
        return split.groups
    return split.studies
