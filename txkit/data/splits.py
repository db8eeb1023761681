"""Which images a run trains, validates and tests on: seeded class-proportional fractions, k-fold
cross-validation folds, and the checks that a dataset has the splits a run needs.

k-fold cross-validation (`folds` K, `fold` I, `fold_repeat` R, `fold_seed` S)
    The *pool* is the dataset's train and val splits together (:func:`fold_pool`); its test split, when it has
    one, is never folded and stays the run's test split. :func:`assign_folds` deals the pool's patients (its
    ``groups``; an image is its own patient in a dataset without them) to K folds, so all images of one patient
    land in one fold, stratified by class: a patient's stratum is the rarest class among its images (multi-label:
    the rarest of its images' first positive labels, :func:`label_strata`), and each stratum's patients are
    dealt to the folds in rounds of K, one patient per fold and round, the larger patients first to the folds
    holding the fewest images. The assignment depends on (S, K, R) and the pool's ids, groups and labels only:
    every cell and every `seed` of an experiment gets the same folds, so the cells are paired fold by fold.

    A run of fold I trains on the other K - 1 folds. Its validation split (early stopping, the best checkpoint)
    is a patient-disjoint, class-proportional slice of those training folds (:data:`FOLD_VAL_SHARE` of each
    stratum's patients, at least one where a stratum has two or more, seeded by (S, K, R, I)); the dataset's
    own val split is folded with train and not used for selection. `fraction` applies to what remains for
    training. Fold I is the run's out-of-fold split (``oof``): predicted with the best weights at the end.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from txkit.datasets.base import Split, TxDataset
from txkit.errors import ConfigError, DataError, TxkitError

#: The splits that are folded together; the test split never is.
POOL = ("train", "val")
#: The share of each stratum's patients in the training folds that becomes the fold's validation split.
FOLD_VAL_SHARE = 0.15


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


# --- k-fold cross-validation ---------------------------------------------------------------------------

def fold_pool(dataset: TxDataset) -> Split:
    """The images that are folded: the dataset's train and val splits together (in that order), never test.

    A dataset with one of them alone gives that split itself (so its disk image cache is the one a run without
    folds uses). Ids of splits without given ids are prefixed with the split's name to stay distinct; groups
    (patients) and studies are kept when every pooled split has them.
    """
    parts = [(name, dataset.splits[name]) for name in POOL if name in dataset.splits and len(dataset.splits[name])]
    if not parts:
        raise DataError(f"dataset {dataset.name!r}: `folds` needs images in its train or val split, and both are "
                        f"empty or missing; check the data root")
    if len(parts) == 1:
        return parts[0][1]
    return _concat([split for _, split in parts], [name for name, _ in parts])


def _concat(splits: list[Split], names: list[str]) -> Split:
    starts = np.cumsum([0] + [len(s) for s in splits])

    def where(i: int) -> tuple[Split, int]:
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return splits[k], i - int(starts[k])

    def load(i: int) -> np.ndarray:
        split, j = where(i)
        return split.image(j)

    def read(i: int) -> tuple[np.ndarray, dict]:
        split, j = where(i)
        return split.values(j)

    named = all(s.named for s in splits)
    ids = [i for s, name in zip(splits, names) for i in (s.ids if named else [f"{name}:{x}" for x in s.ids])]
    labels = np.concatenate([s.labels for s in splits])

    def joined(attribute: str):
        values = [getattr(s, attribute) for s in splits]
        return None if any(v is None for v in values) else [x for v in values for x in v]

    # One transform for all (a dataset builds its splits alike); otherwise the pool is not disk-cached.
    keys = {s.transform_key for s in splits}
    sources = joined("sources") if len(keys) == 1 else None
    pooled = Split(load, labels, joined("groups"), ids, joined("studies"), read=read, sources=sources,
                   transform_key=next(iter(keys)) if sources is not None else None)
    pooled.named = named
    return pooled


def fold_units(split: Split) -> np.ndarray:
    """What a fold keeps together: each image's patient (group), or the image itself without groups."""
    if split.groups is not None:
        return np.asarray(split.groups).astype(str)
    return np.asarray([f"image:{i}" for i in range(len(split))])


def _strata(split: Split, task: str) -> np.ndarray:
    labels = split.labels
    return np.asarray(labels, dtype=np.int64) if task == "multiclass" else label_strata(labels)


def class_patients(split: Split, classes: list[str], task: str) -> dict[str, int]:
    """Patients (or images, without groups) with at least one image of each class (multi-label: a positive)."""
    units = fold_units(split)
    counts = {}
    for k, name in enumerate(classes):
        if task == "multiclass":
            member = np.asarray(split.labels) == k
        else:
            member = np.nan_to_num(np.asarray(split.labels, dtype=np.float64)[:, k], nan=0.0) >= 0.5
        counts[name] = int(len(np.unique(units[member])))
    return counts


def check_fold_count(split: Split, k: int, classes: list[str], task: str, where: str = "") -> None:
    """Refuse K folds when a class has fewer patients than K: some fold would hold none of that class."""
    counts = class_patients(split, classes, task)
    present = {c: n for c, n in counts.items() if n}
    if not present:
        return
    smallest = min(present, key=present.get)
    if k > present[smallest]:
        what = "patients" if split.groups is not None else "images"
        raise ConfigError(f"`folds` {k}: class {smallest!r} has only {present[smallest]} {what}{where}, so some fold "
                          f"would hold none of it; use `folds` {present[smallest]} or fewer")


def _rng(*key: int) -> np.random.Generator:
    # A fixed first word keeps these streams apart from the other seeded draws of a run.
    return np.random.default_rng(np.random.SeedSequence([0x5F01D, *[int(x) for x in key]]))


def _unit_strata(units: np.ndarray, strata: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique units in sorted order, each unit's stratum, each image's unit index). A unit's stratum is the
    rarest (fewest units) of its images' strata; ties go to the smaller stratum value."""
    unique, unit_of = np.unique(units, return_inverse=True)
    pairs = np.unique(np.stack([unit_of, strata]), axis=1)  # (unit, stratum) pairs present
    values, units_per = np.unique(pairs[1], return_counts=True)
    rarity = dict(zip(values.tolist(), units_per.tolist()))
    unit_stratum = np.empty(len(unique), dtype=np.int64)
    best: dict[int, tuple[int, int]] = {}
    for u, s in pairs.T.tolist():
        key = (rarity[s], s)
        if u not in best or key < best[u]:
            best[u] = key
    for u, (_, s) in best.items():
        unit_stratum[u] = s
    return unique, unit_stratum, unit_of.ravel()


def assign_folds(split: Split, k: int, seed: int, repeat: int, task: str) -> np.ndarray:
    """The fold (0..K-1) of every image of ``split``: grouped by patient, stratified by class, seeded by
    (``seed``, K, ``repeat``) and nothing else (see the module docstring)."""
    if k < 2:
        raise ConfigError(f"`folds` must be 2 or more, got {k}; use e.g. `folds` 5")
    unique, unit_stratum, unit_of = _unit_strata(fold_units(split), _strata(split, task))
    size = np.bincount(unit_of, minlength=len(unique))
    rng = _rng(seed, k, repeat)
    fold_of_unit = np.empty(len(unique), dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)  # images per fold so far
    values, counts = np.unique(unit_stratum, return_counts=True)
    for value in values[np.lexsort((values, counts))]:  # rarest stratum first
        members = rng.permutation(np.flatnonzero(unit_stratum == value))
        members = members[np.argsort(-size[members], kind="stable")]  # larger patients first, ties shuffled
        for start in range(0, len(members), k):
            order = rng.permutation(k)
            order = order[np.argsort(load[order], kind="stable")]  # emptiest folds first, ties shuffled
            for unit, fold in zip(members[start:start + k], order):
                fold_of_unit[unit] = fold
                load[fold] += size[unit]
    return fold_of_unit[unit_of]


def holdout_units(split: Split, indices: np.ndarray, share: float, rng: np.random.Generator,
                  task: str) -> np.ndarray:
    """A patient-disjoint, class-proportional ``share`` of ``indices`` (positions in ``split``): of each stratum's
    patients ``round(share * n)``, at least one where the stratum has two or more (one alone stays for training)."""
    part = split.subset(indices)
    unique, unit_stratum, unit_of = _unit_strata(fold_units(part), _strata(part, task))
    chosen = np.zeros(len(unique), dtype=bool)
    for value in np.unique(unit_stratum):
        members = rng.permutation(np.flatnonzero(unit_stratum == value))
        n = len(members)
        take = max(1, int(round(share * n))) if n >= 2 else 0
        chosen[members[:take]] = True
    return np.asarray(indices)[chosen[unit_of]]


def assignment_digest(split: Split, folds: np.ndarray) -> str:
    """sha256 over every pooled image's id and fold, in pool order: equal digests, equal folds. The prefix all
    ids share is left out, so the same files reached through another path (relative, moved) digest alike."""
    ids = [str(i) for i in split.ids]
    skip = len(os.path.commonprefix(ids)) if len(ids) > 1 else 0
    digest = hashlib.sha256()
    for image_id, fold in zip(ids, folds.tolist()):
        digest.update(f"{image_id[skip:]}\t{fold}\n".encode())
    return digest.hexdigest()


@dataclass
class FoldParts:
    """One fold of a run: positions in ``pool`` of its training images (before `fraction`), its validation
    slice of the training folds and its out-of-fold images, and what config.json records about it."""

    pool: Split
    train: np.ndarray
    val: np.ndarray
    oof: np.ndarray
    record: dict


def fold_parts(dataset: TxDataset, folds: int, fold: int, repeat: int = 0, seed: int = 0) -> FoldParts:
    """Fold ``fold`` of ``folds`` (repeat ``repeat``, fold seed ``seed``) of the dataset's pool, checked first:
    a K that a class's patients cannot fill, or a fold index outside 0..K-1, is one line naming the option."""
    if not 0 <= fold < folds:
        raise ConfigError(f"`fold` {fold} is outside 0..{folds - 1} for `folds` {folds}; pass a `fold` from 0 to "
                          f"{folds - 1}")
    pool = fold_pool(dataset)
    pooled = "+".join(name for name in POOL if name in dataset.splits and len(dataset.splits[name]))
    check_fold_count(pool, folds, dataset.classes, dataset.task, f" in the pooled {pooled} images of {dataset.name}")
    assignment = assign_folds(pool, folds, seed, repeat, dataset.task)
    oof = np.flatnonzero(assignment == fold)
    training = np.flatnonzero(assignment != fold)
    val = holdout_units(pool, training, FOLD_VAL_SHARE, _rng(seed, folds, repeat, fold + 1), dataset.task)
    if not len(val):
        raise DataError(f"`folds` {folds}: the training folds of fold {fold} have too few patients per class to "
                        f"hold some out for validation; use fewer `folds` or a larger dataset")
    train = np.setdiff1d(training, val)
    record = {"folds": folds, "fold": fold, "repeat": repeat, "fold_seed": seed, "pool": pooled.split("+"),
              "pool_images": len(pool), "pool_patients": int(len(np.unique(fold_units(pool)))),
              "grouped_by": "patient" if pool.groups is not None else "image", "val_share": FOLD_VAL_SHARE,
              "oof_images": int(len(oof)), "val_images": int(len(val)), "training_fold_images": int(len(train)),
              "assignment_sha256": assignment_digest(pool, assignment)}
    return FoldParts(pool, train, val, oof, record)


def fold_summary(dataset: TxDataset, folds: int, seed: int = 0, repeat: int = 0) -> dict:
    """What ``txkit data info --folds K`` shows: per fold its images, patients and images per class (multi-label:
    positives), checked as a run checks them."""
    from txkit.datasets.info import positives

    pool = fold_pool(dataset)
    pooled = [name for name in POOL if name in dataset.splits and len(dataset.splits[name])]
    check_fold_count(pool, folds, dataset.classes, dataset.task,
                     f" in the pooled {'+'.join(pooled)} images of {dataset.name}")
    assignment = assign_folds(pool, folds, seed, repeat, dataset.task)
    units = fold_units(pool)
    rows = []
    for fold in range(folds):
        members = np.flatnonzero(assignment == fold)
        part = pool.subset(members)
        rows.append({"fold": fold, "images": int(len(members)), "patients": int(len(np.unique(units[members]))),
                     "positives": positives(part, dataset)})
    return {"folds": folds, "fold_seed": seed, "repeat": repeat, "pool": pooled, "pool_images": len(pool),
            "grouped_by": "patient" if pool.groups is not None else "image",
            "class_patients": class_patients(pool, dataset.classes, dataset.task), "per_fold": rows,
            "assignment_sha256": assignment_digest(pool, assignment)}


def run_splits(dataset: TxDataset, cfg) -> dict[str, Split]:
    """The splits a run with config ``cfg`` trained, validated and tested on, by name: the dataset's own, or with
    `folds` its fold's ``train`` (before `fraction`), ``val`` (the slice of the training folds), ``oof`` (the
    held-out fold) and the dataset's ``test``."""
    if getattr(cfg, "folds", None) is None:
        return dict(dataset.splits)
    parts = fold_parts(dataset, cfg.folds, cfg.fold, cfg.fold_repeat, cfg.fold_seed)
    out = {"train": parts.pool.subset(parts.train), "val": parts.pool.subset(parts.val),
           "oof": parts.pool.subset(parts.oof)}
    if "test" in dataset.splits:
        out["test"] = dataset.splits["test"]
    return out
