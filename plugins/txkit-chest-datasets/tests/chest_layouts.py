"""Builders of tiny fixture trees in the official layouts of CheXpert, ChestX-ray14, Montgomery and Shenzhen."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from txkit.testing import write_image as write_pixels
from txkit_chest_datasets.chexpert import HEADER, OBSERVATIONS

CODE_TEXT = {1: "1.0", 0: "0.0", -1: "-1.0", None: ""}


def write_image(path: Path, kind: str = "gray", size: tuple[int, int] = (24, 20)) -> Path:
    """A small image file; kind is gray, rgb, rgba, 16bit (PNG only) or truncated (a cut-off file)."""
    width, height = size
    ramp = np.add.outer(np.arange(height), np.arange(width)).astype(np.float64)
    gray = (ramp / ramp.max() * 255).astype(np.uint8)
    if kind == "16bit":
        return write_pixels(path, (ramp / ramp.max() * 65535).astype(np.uint16))
    if kind in ("rgb", "rgba"):
        channels = [gray, 255 - gray, gray // 2] + ([np.full_like(gray, 200)] if kind == "rgba" else [])
        return write_pixels(path, np.stack(channels, axis=-1))
    return write_pixels(path, gray, truncate=kind == "truncated")


# ------------------------------------------------------------------------------------------------- CheXpert

def chexpert_row(patient: int, study: int = 1, view: int = 1, frontal: bool = True, projection: str = "AP",
                 split: str = "train", **labels) -> dict:
    """One CSV row; labels by observation name with spaces as underscores: Pleural_Effusion=-1."""
    kind = "frontal" if frontal else "lateral"
    path = f"CheXpert-v1.0-small/{split}/patient{patient:05d}/study{study}/view{view}_{kind}.jpg"
    codes = {name: labels.get(name.replace(" ", "_")) for name in OBSERVATIONS}
    return {"Path": path, "Sex": "Female", "Age": "60", "Frontal/Lateral": "Frontal" if frontal else "Lateral",
            "AP/PA": projection if frontal else "", **{k: CODE_TEXT[v] for k, v in codes.items()}}


def write_chexpert_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def chexpert_tree(base: Path, train: list[dict], valid: list[dict], images: bool = True) -> Path:
    """base/CheXpert-v1.0-small/{train.csv, valid.csv, train/..., valid/...}; returns the dataset folder."""
    folder = base / "CheXpert-v1.0-small"
    write_chexpert_csv(folder / "train.csv", train)
    write_chexpert_csv(folder / "valid.csv", valid)
    if images:
        for row in train + valid:
            write_image(base / row["Path"], "rgb" if "lateral" in row["Path"] else "gray")
    return folder


def write_large_train_csv(path: Path, rows: int, positives: dict[str, int], uncertain: dict[str, int],
                          seed: int = 0) -> Path:
    """A train.csv of ``rows`` rows whose observations have exactly the given positive and uncertain counts;
    the other cells are 0.0 or empty. Four images per patient, frontal AP/PA and lateral views mixed."""
    rng = np.random.default_rng(seed)
    text = np.array(["1.0", "-1.0", "0.0", ""])  # indexed by 0 positive, 1 uncertain, 2 negative, 3 blank
    cells = np.empty((rows, len(OBSERVATIONS)), dtype=np.int8)
    for k, name in enumerate(OBSERVATIONS):
        pos, unc = positives.get(name, 0), uncertain.get(name, 0)
        column = np.full(rows, 3, dtype=np.int8)
        column[:pos], column[pos:pos + unc] = 0, 1
        column[pos + unc:pos + unc + (rows - pos - unc) // 2] = 2
        cells[:, k] = column[rng.permutation(rows)]
    labels = [",".join(row) for row in text[cells].tolist()]
    lines = [",".join(HEADER)]
    for i in range(rows):
        kind, projection = ("lateral", "") if i % 3 == 2 else ("frontal", ("AP", "PA")[i % 2])
        lines.append(f"CheXpert-v1.0-small/train/patient{i // 4 + 1:05d}/study1/view{i % 4 + 1}_{kind}.jpg,Male,50,"
                     f"{kind.capitalize()},{projection},{labels[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------------- ChestX-ray14

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def nih_tree(root: Path, entries: list[tuple[str, str, int, str]], test: list[str], batches: bool = False,
             csv_name: str = "Data_Entry_2017.csv", images: bool = True) -> Path:
    """entries: (Image Index, Finding Labels, Patient ID, View Position); images under images/ or, with
    ``batches``, spread over images_001/images/ and images_002/images/ as in the Kaggle download."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [NIH_HEADER] + [f"{name},{findings},0,{patient},58,M,{view},2682,2749,0.143,0.143"
                            for name, findings, patient, view in entries]
    (root / csv_name).write_text("\n".join(lines) + "\n")
    names = [e[0] for e in entries]
    (root / "train_val_list.txt").write_text("\n".join(n for n in names if n not in test) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    if images:
        for i, name in enumerate(names):
            folder = root / f"images_{i % 2 + 1:03d}" / "images" if batches else root / "images"
            write_image(folder / name)
    return root


# ------------------------------------------------------------------------------------------------- TB sets

def tb_tree(root: Path, folder: str, prefix: str, labels: list[int]) -> Path:
    """root/<folder>/CXR_png/<prefix>_NNNN_<label>.png plus the ClinicalReadings/ and a Thumbs.db."""
    for i, label in enumerate(labels, start=1):
        write_image(root / folder / "CXR_png" / f"{prefix}_{i:04d}_{label}.png")
        readings = root / folder / "ClinicalReadings" / f"{prefix}_{i:04d}_{label}.txt"
        readings.parent.mkdir(parents=True, exist_ok=True)
        readings.write_text("Patient's Sex: M\nPatient's Age: 040Y\nnormal\n" if not label else "TB\n")
    (root / folder / "CXR_png" / "Thumbs.db").write_bytes(b"\0" * 16)
    return root / folder
