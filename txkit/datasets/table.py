"""`csv`: a table of image paths and labels, with optional split and group (patient) columns.

Single-label: one label per row (class names or integers). Multi-label: labels separated by ``|`` in the
label column, or several 0/1 columns named with ``label_columns=A,B,C``.

Integer labels define the classes 0..max only when every one of them occurs; otherwise (a stray 7 in a table of
0/1) the table is refused unless ``classes=...`` lists the classes. Each image is listed once: a path on two rows
is refused, so one image can never land in two splits.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import model_validator

from txkit.datasets.base import TxDataset
from txkit.datasets.files import drop_unreadable, file_split, group_split
from txkit.datasets.metadata import AGE_BINS, bin_ages, parse_age_bins, subgroup_values
from txkit.errors import DataError
from txkit.options import Field, Options, check_fractions, validate_options

MISSING = "check the path column or image_root, or pass `skip_bad_images` to skip it"
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


class CsvOptions(Options):
    """Options of ``csv`` (``--data-option KEY=VALUE``); ``--data-root`` is the CSV file."""

    path_column: str = Field("path", description="column with the image paths, relative to image_root")
    label_column: str = Field("label", description="column with one label per row (class name or integer), "
                              "or several labels separated by | for multi-label")
    label_columns: Optional[str] = Field(None, description="multi-label from 0/1 columns instead: their names, "
                                         "comma-separated (A,B,C); an empty cell is an unknown label")
    split_column: str = Field("split", description="column with train, val or test per row, used when present "
                              "(the fractions are then ignored)")
    group_column: str = Field("group", description="column with a patient or group id, used when present: all "
                              "rows of a group land in one split")
    image_root: Optional[str] = Field(None, description="folder the paths are relative to (default: the CSV "
                                      "file's folder)")
    classes: Optional[str] = Field(None, description="the class names in label order, comma-separated (default: "
                                   "sorted names, or 0..max for integer labels)")
    seed: int = Field(0, description="seed of the split when the CSV has no split column")
    val_fraction: float = Field(0.15, ge=0.0, le=0.9, description="fraction of the groups (per class) that "
                                "becomes val when the CSV has no split column")
    test_fraction: float = Field(0.15, ge=0.0, le=0.9, description="fraction of the groups (per class) that "
                                 "becomes test when the CSV has no split column")
    skip_bad_images: bool = Field(False, description="open every image once and skip (count) unreadable ones; "
                                  "txkit train --skip-bad-images sets it")
    image_size: Optional[int] = Field(None, ge=1, description="suggested input size in pixels for training "
                                      "(recorded in the dataset info)")
    subgroups: Optional[str] = Field(None, description="columns carried as per-image metadata for subgroup "
                                     "analysis (txkit evaluate --by), comma-separated, e.g. sex,age,view; empty "
                                     "cells are 'unknown'")
    age_column: str = Field("age", description="the subgroups column holding ages in years, binned by age_bins")
    age_bins: str = Field(AGE_BINS, description="edges of the age bins, comma-separated: 40,60 gives <40, 40-59 "
                          "and >=60 (each bin holds its lower edge)")

    _fractions = model_validator(mode="after")(check_fractions)


def build(root=None, **options) -> TxDataset:
    """Images listed in a CSV file; options: :class:`CsvOptions`."""
    o = validate_options("dataset 'csv'", CsvOptions, options, DataError)
    path_column, label_column, label_columns = o["path_column"], o["label_column"], o["label_columns"]
    split_column, group_column, image_root, classes = (o["split_column"], o["group_column"], o["image_root"],
                                                       o["classes"])
    seed, val_fraction, test_fraction = o["seed"], o["val_fraction"], o["test_fraction"]
    skip_bad_images, image_size = o["skip_bad_images"], o["image_size"]
    table = _csv_path(root)
    rows, header = _read(table)
    _require_columns(table, header, [path_column] + (label_columns.split(",") if label_columns else [label_column]))
    base = Path(image_root) if image_root else table.parent
    paths = [base / row[path_column] for row in rows]
    _check_unique(table, [row[path_column] for row in rows], paths)
    if label_columns:
        names = [c.strip() for c in label_columns.split(",")]
        labels, task = _binary_columns(table, rows, names), "multilabel"
    else:
        names, labels, task = _labels(table, rows, label_column, classes)
    groups = [row[group_column] for row in rows] if group_column in header else None
    given = _given_splits(table, rows, split_column) if split_column in header else None
    metadata = _metadata(table, rows, header, o["subgroups"], o["age_column"], o["age_bins"])
    skipped = 0
    if skip_bad_images:
        paths, (labels, groups, given, *kept), skipped = drop_unreadable(
            paths, list(labels), groups or [None] * len(paths), given or [None] * len(paths), *metadata.values())
        labels = np.asarray(labels)
        groups = groups if group_column in header else None
        given = given if split_column in header else None
        metadata = {column: np.asarray(values, dtype=str) for column, values in zip(metadata, kept)}
    indices = _split_indices(table, given, groups, labels, task, int(seed), float(val_fraction), float(test_fraction))
    splits = {name: file_split([paths[i] for i in idx], np.asarray(labels)[idx],
                               [groups[i] for i in idx] if groups else None, MISSING,
                               metadata={column: values[idx] for column, values in metadata.items()})
              for name, idx in indices.items() if len(idx) or name == "train"}
    info = {"csv": str(table), "skipped_images": skipped}
    if image_size:
        info["image_size"] = int(image_size)
    return TxDataset("csv", names, splits, task=task, description=f"images listed in {table}", info=info)


def _metadata(table: Path, rows: list[dict], header: list[str], subgroups: str | None, age_column: str,
              age_bins: str) -> dict[str, np.ndarray]:
    """The `subgroups` columns as subgroup names per row; the age column binned by `age_bins`."""
    edges = parse_age_bins(age_bins)
    if not subgroups:
        return {}
    columns = [c.strip() for c in subgroups.split(",") if c.strip()]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{table}: `data_options` subgroups names {missing[0]!r}, which is not a column; the "
                        f"columns are {','.join(header)}")
    return {c: bin_ages([row[c] for row in rows], edges) if c.lower() == age_column.lower()
            else subgroup_values([row[c] for row in rows]) for c in columns}


def _csv_path(root) -> Path:
    if not root:
        raise DataError("csv needs `data_root` pointing to the CSV file (columns path,label[,split][,group])")
    path = Path(root).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: CSV file not found; `data_root` must be the CSV file with columns "
                        f"path,label[,split][,group]")
    return path


def _read(table: Path) -> tuple[list[dict], list[str]]:
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{table}: not a readable CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{table}: no rows; expected a header line and one row per image")
    short = next((i for i, row in enumerate(rows) if None in row.values()), None)
    if short is not None:
        raise DataError(f"{table}: row {short + 2} has fewer cells than the header ({','.join(header)}); fill "
                        f"in the row")
    return rows, header


def _require_columns(table: Path, header: list[str], needed: list[str]) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{table}: no column {missing[0]!r} in the header ({','.join(header)}); rename it or pass "
                        f"`data_options` path_column=NAME / label_column=NAME")


def _labels(table: Path, rows: list[dict], column: str, classes: str | None):
    cells = [row[column].strip() for row in rows]
    if any("|" in c for c in cells):
        names = classes.split(",") if classes else sorted({x for c in cells for x in c.split("|") if x})
        labels = np.zeros((len(cells), len(names)), dtype=np.float32)
        for i, cell in enumerate(cells):
            for name in filter(None, cell.split("|")):
                labels[i, _index(table, names, name, i)] = 1.0
        return names, labels, "multilabel"
    if classes:
        names = classes.split(",")
    elif all(c.lstrip("-").isdigit() for c in cells):
        values = [int(c) for c in cells]
        _check_integer_labels(table, values)
        return [str(k) for k in range(max(values) + 1)], np.asarray(values, dtype=np.int64), "multiclass"
    else:
        names = sorted(set(cells))
    return names, np.array([_index(table, names, c, i) for i, c in enumerate(cells)]), "multiclass"


def _check_integer_labels(table: Path, values: list[int]) -> None:
    """Integer labels are the classes 0..max only when each of them occurs: a gap is a stray label."""
    negative = next((i for i, v in enumerate(values) if v < 0), None)
    if negative is not None:
        raise DataError(f"{table}: row {negative + 2} has label {values[negative]}; integer labels are classes "
                        f"0, 1, 2, ...: fix the row")
    absent = sorted(set(range(max(values) + 1)) - set(values))
    if absent:
        row = next(i for i, v in enumerate(values) if v > absent[0])
        top = max(values)
        raise DataError(f"{table}: row {row + 2} has label {values[row]}, but no row has label {absent[0]}; integer "
                        f"labels define classes 0..max only when every class occurs: fix the row or list the "
                        f"classes with `data_options` classes=0,1,...,{top}")


def _index(table: Path, names: list[str], value: str, row: int) -> int:
    if value in names:
        return names.index(value)
    raise DataError(f"{table}: row {row + 2} has label {value!r}, which is out of range for classes "
                    f"{','.join(names)}; fix the row or the `data_options` classes list")


def _binary_columns(table: Path, rows: list[dict], names: list[str]) -> np.ndarray:
    labels = np.full((len(rows), len(names)), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        for k, name in enumerate(names):
            cell = row[name].strip()
            if cell in ("1", "1.0", "0", "0.0"):
                labels[i, k] = float(cell)
            elif cell:
                raise DataError(f"{table}: row {i + 2}, column {name!r} is {cell!r}; expected 0, 1 or empty")
    return labels


def _check_unique(table: Path, cells: list[str], paths: list[Path]) -> None:
    """Each image once: a path on two rows (however written) could put one image in train and test."""
    first_row: dict[str, int] = {}
    for i, (cell, path) in enumerate(zip(cells, paths)):
        if not cell.strip():
            raise DataError(f"{table}: row {i + 2} has an empty path; fill it in or remove the row")
        key = os.path.normpath(os.path.abspath(path))
        if key in first_row:
            raise DataError(f"{table}: rows {first_row[key] + 2} and {i + 2} both list {cell}; each image must be "
                            f"listed once: remove one of the rows")
        first_row[key] = i


def _given_splits(table: Path, rows: list[dict], column: str) -> list[str]:
    given = []
    for i, row in enumerate(rows):
        value = row[column].strip()
        if value.lower() not in SPLIT_NAMES:
            raise DataError(f"{table}: row {i + 2} has split {value!r} in column {column}; use train, val or test")
        given.append(SPLIT_NAMES[value.lower()])
    return given


def _split_indices(table, given, groups, labels, task, seed, val, test) -> dict[str, np.ndarray]:
    if given is not None:
        given = np.asarray(given)
        if groups:
            _check_disjoint(table, given, np.asarray(groups))
        return {name: np.flatnonzero(given == name) for name in ("train", "val", "test")}
    strata = labels if task == "multiclass" else np.nan_to_num(labels).argmax(axis=1)
    return group_split(len(labels), groups, np.asarray(strata), seed, val, test)


def _check_disjoint(table, given: np.ndarray, groups: np.ndarray) -> None:
    for g in np.unique(groups):
        sides = set(given[groups == g])
        if len(sides) > 1:
            raise DataError(f"{table}: group {g} appears in {' and '.join(sorted(sides))}; one patient must "
                            f"stay in one split (fix the split column)")
