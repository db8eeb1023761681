"""`chestxray14`: NIH ChestX-ray14 exactly as distributed (Wang et al. 2017).

Labels: the 14 findings of ``Finding Labels`` (``|``-separated); ``No Finding`` is a row of zeros. Splits: the
official test_list.txt is the test split; train_val_list.txt is divided by patient (seeded) into train and val.
Images may sit in images/ or in the batch folders images_001/images/ ... images_012/images/.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from txkit import (DataError, Split, TxDataset, bin_ages, file_split, group_split, parse_age_bins, readable,
                   require_dir, subgroup_values, validate_options)
from txkit_chest_datasets.options import ChestXray14Options, as_names

NAME = "chestxray14"
ENTRY_CSVS = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
LAYOUT = ("Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv), train_val_list.txt, test_list.txt and "
          "images/00000001_000.png ... (or images_001/images/ ... images_012/images/)")
HEADER_START = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                "View Position"]
FINDINGS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
            "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax"]
NO_FINDING = "No Finding"
# The thesis (Piano 2020) keeps the five findings that match its CheXpert observations.
THESIS_FIVE = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion"]


@dataclass
class Entries:
    """Data_Entry_2017.csv, indexed: image names, findings (N, 14), patients, view positions, and the Patient
    Gender and Patient Age columns as they are written."""

    csv: Path
    names: list[str]
    index: dict[str, int]
    labels: np.ndarray
    patients: np.ndarray
    views: np.ndarray
    sex: np.ndarray | None = None
    age: np.ndarray | None = None


def build(root=None, **options) -> TxDataset:
    """NIH ChestX-ray14 under ``root``; options: :class:`ChestXray14Options`."""
    o = validate_options(f"dataset {NAME!r}", ChestXray14Options, options, DataError)
    names = label_set(o["labels"])
    view, val_fraction, seed, skip = o["view"].upper(), o["val_fraction"], o["seed"], o["skip_bad_images"]
    age_bins = parse_age_bins(o["age_bins"])
    folder = require_dir(root, LAYOUT)
    entries = read_entries(find_entry_csv(folder))
    test = rows_of_list(folder / "test_list.txt", entries)
    train_val = rows_of_list(folder / "train_val_list.txt", entries)
    if view != "ALL":
        test, train_val = (rows[entries.views[rows] == view] for rows in (test, train_val))
    images = find_images(folder)
    (train_val, test), skipped = _resolve_missing(folder, entries, images, [train_val, test], skip)
    parts = group_split(len(train_val), entries.patients[train_val], np.zeros(len(train_val)), seed,
                        val=val_fraction, test=0.0)
    rows = {"train": train_val[parts["train"]], "val": train_val[parts["val"]], "test": test}
    if skip:
        rows, unreadable = _drop_unreadable(entries, images, rows)
        skipped += unreadable
    columns = [FINDINGS.index(name) for name in names]
    splits = {split: make_split(entries, images, entries.labels[:, columns], picked, age_bins)
              for split, picked in rows.items()}
    info = {"root": str(folder), "entries": entries.csv.name, "labels": names, "view": view.lower(),
            "protocol": f"test = test_list.txt; val = {val_fraction:g} of train_val_list.txt's patients (seed {seed})",
            "skipped_images": skipped, "image_size": o["image_size"]}
    return TxDataset(NAME, names, splits, task="multilabel", description=f"NIH ChestX-ray14 under {folder}",
                     info=info)


def label_set(value) -> list[str]:
    """``14`` (all findings), ``5`` (the thesis' five) or a comma-separated list of findings."""
    text = str(value).strip()
    if text == "14":
        return list(FINDINGS)
    if text == "5":
        return list(THESIS_FIVE)
    return as_names(NAME, "labels", text, FINDINGS)


def find_entry_csv(folder: Path) -> Path:
    for name in ENTRY_CSVS:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / ENTRY_CSVS[1]}: not found; `data_root` must hold {LAYOUT}")


def read_entries(path: Path) -> Entries:
    """Read by position: the last two headers have commas inside brackets."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header[: len(HEADER_START)] != HEADER_START:
            raise DataError(f"{path}: header starts {','.join(header[:7])!r}; expected {','.join(HEADER_START)},...")
        rows = [row for row in reader if row]
    if not rows:
        raise DataError(f"{path}: no rows; expected one row per image")
    names = [row[0] for row in rows]
    return Entries(path, names, {name: i for i, name in enumerate(names)}, _findings(path, [row[1] for row in rows]),
                   np.asarray([row[3] for row in rows]), np.asarray([row[6] for row in rows]),
                   np.asarray([row[5] for row in rows]), np.asarray([row[4] for row in rows]))


def _findings(path: Path, cells: list[str]) -> np.ndarray:
    labels = np.zeros((len(cells), len(FINDINGS)), dtype=np.float32)
    position = {name: k for k, name in enumerate(FINDINGS)}
    for i, cell in enumerate(cells):
        for finding in cell.split("|"):
            finding = finding.strip()
            if finding == NO_FINDING:
                continue
            if finding not in position:
                raise DataError(f"{path}: line {i + 2}: unknown finding {finding!r}; expected {NO_FINDING!r} or "
                                f"|-separated names from {', '.join(FINDINGS)}")
            labels[i, position[finding]] = 1.0
    return labels


def rows_of_list(path: Path, entries: Entries) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: not found; `data_root` must hold {LAYOUT}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    unknown = [name for name in names if name not in entries.index]
    if unknown:
        raise DataError(f"{path}: {unknown[0]} is not in {entries.csv.name} ({len(unknown)} such names); "
                        f"use the list files of the same release as the CSV")
    return np.asarray([entries.index[name] for name in names], dtype=np.int64)


def find_images(folder: Path) -> dict[str, str]:
    """Image name -> folder, from images/ and images_NNN/images/ (one directory listing each)."""
    folders = [folder / "images"] + sorted(p / "images" for p in folder.glob("images_*") if p.is_dir())
    found = {}
    for directory in folders:
        if directory.is_dir():
            with os.scandir(directory) as it:
                found.update((entry.name, str(directory)) for entry in it if entry.name.endswith(".png"))
    return found


def _resolve_missing(folder: Path, entries: Entries, images: dict, row_sets: list[np.ndarray], skip: bool):
    names = entries.names
    missing = sum(int(sum(names[i] not in images for i in rows)) for rows in row_sets)
    if missing and not skip:
        first = next(names[i] for rows in row_sets for i in rows if names[i] not in images)
        raise DataError(f"{first}: image not found in {folder / 'images'}/ or {folder}/images_NNN/images/ ({missing} "
                        f"listed images are missing); unpack every images_NNN archive under {folder} or pass "
                        f"`skip_bad_images`")
    kept = [rows[np.asarray([names[i] in images for i in rows], dtype=bool)] for rows in row_sets]
    return kept, missing


def _path(entries: Entries, images: dict, row: int) -> str:
    name = entries.names[row]
    return os.path.join(images[name], name)


def _drop_unreadable(entries: Entries, images: dict, rows: dict) -> tuple[dict, int]:
    kept, bad = {}, 0
    for split, picked in rows.items():
        ok = np.asarray([readable(Path(_path(entries, images, i))) for i in picked], dtype=bool)
        kept[split] = picked[ok]
        bad += int((~ok).sum())
    return kept, bad


def make_split(entries: Entries, images: dict, labels: np.ndarray, rows: np.ndarray,
               age_bins=(40.0, 60.0)) -> Split:
    """Metadata for subgroup analysis: sex (Patient Gender: F, M), age (Patient Age binned by ``age_bins``) and
    view (View Position: PA, AP; the plugin's ``view`` option filters on the same column)."""
    metadata = {"view": subgroup_values(entries.views[rows])}
    if entries.sex is not None:
        metadata = {"sex": subgroup_values(entries.sex[rows]), "age": bin_ages(entries.age[rows], age_bins),
                    **metadata}
    return file_split([_path(entries, images, i) for i in rows], labels[rows], entries.patients[rows],
                      ids=[entries.names[i] for i in rows], metadata=metadata)
