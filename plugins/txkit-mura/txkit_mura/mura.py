"""`mura`: MURA v1.1 exactly as distributed (Rajpurkar et al. 2017).

Labels belong to studies (``*_labeled_studies.csv``: ``study_folder/,label``, 1 abnormal); every image takes its
study's label. Each split carries ``studies`` (the study folder), so ``txkit evaluate`` can also score a study by
the mean probability of its images, as the MURA paper does. Splits: valid/ is the test split (MURA's own test set
is hidden); train/ is divided by patient (seeded, class-proportional) into train and val.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from txkit import (DataError, Field, Options, Split, TxDataset, file_split, group_split, readable, require_dir,
                   validate_options)

NAME = "mura"
CLASSES = ["normal", "abnormal"]
STUDY_TYPES = ("XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST")
LAYOUT = ("MURA-v1.1/ holding train_image_paths.csv, train_labeled_studies.csv, valid_image_paths.csv, "
          "valid_labeled_studies.csv and train/XR_SHOULDER/patient00001/study1_positive/image1.png ...")
FOLDER_NAME = "MURA-v1.1"


@dataclass
class Part:
    """One of MURA's two parts (train or valid): relative image paths with their study, patient and label."""

    name: str
    paths: list[str]
    studies: np.ndarray
    patients: np.ndarray
    labels: np.ndarray

    def take(self, rows: np.ndarray) -> "Part":
        return Part(self.name, [self.paths[i] for i in rows], self.studies[rows], self.patients[rows],
                    self.labels[rows])


class MuraOptions(Options):
    """Options of ``mura`` (``--data-option KEY=VALUE``)."""

    study_types: str = Field("all", description="all, or study types to keep, comma-separated (XR_SHOULDER, "
                             "shoulder and Shoulder are the same)")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="fraction of train/'s patients that becomes val "
                                "(seeded, class-proportional); test is valid/")
    seed: int = Field(0, description="seed of the val split")
    skip_bad_images: bool = Field(False, description="open every image once and skip (count) unreadable ones; "
                                  "txkit train --skip-bad-images sets it")
    image_size: int = Field(320, ge=1, description="input size in pixels for training")


def build(root=None, **options) -> TxDataset:
    """MURA v1.1 under ``root``; options: :class:`MuraOptions`."""
    o = validate_options(f"dataset {NAME!r}", MuraOptions, options, DataError)
    types = parse_study_types(o["study_types"])
    val_fraction, seed, size = o["val_fraction"], o["seed"], o["image_size"]
    folder = find_folder(root)
    train, test = (select(read_part(folder, name), types) for name in ("train", "valid"))
    parts = group_split(len(train.paths), train.patients, train.labels, seed, val=val_fraction, test=0.0)
    chosen = {"train": train.take(parts["train"]), "val": train.take(parts["val"]), "test": test}
    skipped = 0
    if o["skip_bad_images"]:
        chosen, skipped = _drop_unreadable(folder, chosen)
    else:
        check_first_image(folder, train)
    splits = {name: make_split(folder, part) for name, part in chosen.items()}
    info = {"root": str(folder), "study_types": list(types), "skipped_images": skipped, "image_size": size,
            "protocol": f"test = valid/; val = {val_fraction:g} of train/'s patients (seed {seed})",
            "study_scoring": "mean image probability per study (MURA paper)"}
    return TxDataset(NAME, list(CLASSES), splits, description=f"MURA radiographs ({', '.join(types)}) under {folder}",
                     info=info)


def parse_study_types(value) -> tuple[str, ...]:
    """``all`` or a comma-separated list: ``XR_SHOULDER``, ``shoulder`` and ``Shoulder`` are the same."""
    if str(value).strip().lower() == "all":
        return STUDY_TYPES
    chosen = []
    for part in (p.strip().upper() for p in str(value).split(",")):
        name = part if part.startswith("XR_") else f"XR_{part}"
        if name not in STUDY_TYPES:
            raise DataError(f"{NAME}: option study_types: unknown study type {part!r}; use all or some of "
                            f"{', '.join(STUDY_TYPES)}")
        chosen.append(name)
    return tuple(chosen)


def find_folder(root) -> Path:
    folder = require_dir(root, LAYOUT)
    for candidate in (folder, folder / FOLDER_NAME):
        if (candidate / "train_image_paths.csv").is_file():
            return candidate
    raise DataError(f"{folder / 'train_image_paths.csv'}: not found; expected {LAYOUT}")


def relative(path: str) -> str:
    """``MURA-v1.1/train/XR_.../`` -> ``train/XR_...``, whatever the distribution folder is called."""
    path = path.strip().replace("\\", "/").rstrip("/")
    head, _, tail = path.partition("/")
    return path if head in ("train", "valid") else tail


def read_part(folder: Path, name: str) -> Part:
    image_csv, study_csv = folder / f"{name}_image_paths.csv", folder / f"{name}_labeled_studies.csv"
    labels_by_study = read_study_labels(study_csv)
    paths = [relative(row[0]) for row in _rows(image_csv) if row and row[0].strip()]
    if not paths:
        raise DataError(f"{image_csv}: no image paths; expected one path per line")
    studies = [p.rpartition("/")[0] for p in paths]
    missing = next((s for s in studies if s not in labels_by_study), None)
    if missing is not None:
        raise DataError(f"{study_csv}: no label for study {missing}/ (listed in {image_csv.name})")
    components = [p.split("/") for p in paths]
    bad = next((p for p, c in zip(paths, components) if len(c) != 5 or c[1] not in STUDY_TYPES), None)
    if bad is not None:
        raise DataError(f"{image_csv}: path {bad!r} is not {name}/XR_TYPE/patientNNNNN/studyN_label/imageN.png")
    return Part(name, paths, np.asarray(studies), np.asarray([c[2] for c in components]),
                np.asarray([labels_by_study[s] for s in studies], dtype=np.int64))


def read_study_labels(path: Path) -> dict[str, int]:
    labels = {}
    for line, row in enumerate(_rows(path), start=1):
        if not row:
            continue
        if len(row) < 2 or row[1].strip() not in ("0", "1"):
            raise DataError(f"{path}: line {line} is {','.join(row)!r}; expected study_folder/,0 or study_folder/,1")
        labels[relative(row[0])] = int(row[1])
    return labels


def _rows(path: Path) -> list[list[str]]:
    """MURA's CSVs have no header line."""
    if not path.is_file():
        raise DataError(f"{path}: not found; expected {LAYOUT}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.reader(fh))


def select(part: Part, types: tuple[str, ...]) -> Part:
    kinds = np.asarray([p.split("/")[1] for p in part.paths])
    return part.take(np.flatnonzero(np.isin(kinds, types)))


def check_first_image(folder: Path, part: Part) -> None:
    if not part.paths:
        raise DataError(f"{folder / 'train'}: no image of the chosen study types; expected {LAYOUT}")
    first = os.path.join(folder, part.paths[0])
    if not os.path.isfile(first):
        raise DataError(f"{first}: not found (first image of train_image_paths.csv); the images must sit beside "
                        f"the CSVs: {LAYOUT}")


def _drop_unreadable(folder: Path, chosen: dict[str, Part]) -> tuple[dict[str, Part], int]:
    kept, bad = {}, 0
    for name, part in chosen.items():
        ok = np.asarray([readable(Path(folder, p)) for p in part.paths], dtype=bool)
        kept[name] = part.take(np.flatnonzero(ok))
        bad += int((~ok).sum())
    return kept, bad


def make_split(folder: Path, part: Part) -> Split:
    return file_split([os.path.join(folder, path) for path in part.paths], part.labels, part.patients,
                      ids=part.paths, studies=part.studies)
