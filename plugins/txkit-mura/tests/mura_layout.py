"""A tiny MURA-v1.1 tree in the official layout: header-less CSVs, study folders named studyN_positive/negative."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from txkit.testing import write_image as write_pixels


def write_image(path: Path, kind: str = "gray", size: tuple[int, int] = (18, 22)) -> None:
    """A small image file; kind is gray, rgb or truncated (a cut-off file)."""
    width, height = size
    gray = (np.add.outer(np.arange(height), np.arange(width)) * 4 % 256).astype(np.uint8)
    if kind == "rgb":
        write_pixels(path, np.stack([gray, gray // 2, 255 - gray], axis=-1))
    else:
        write_pixels(path, gray, truncate=kind == "truncated")


def mura_tree(base: Path, studies: dict[str, list[tuple[str, int, int, int]]], images: bool = True) -> Path:
    """studies: {"train"|"valid": [(study type, patient number, study number, label), ...]}, two images each."""
    folder = base / "MURA-v1.1"
    folder.mkdir(parents=True, exist_ok=True)
    for part, entries in studies.items():
        image_lines, study_lines = [], []
        for study_type, patient, study, label in entries:
            study_dir = (f"MURA-v1.1/{part}/{study_type}/patient{patient:05d}/"
                         f"study{study}_{'positive' if label else 'negative'}/")
            study_lines.append(f"{study_dir},{label}")
            for n in (1, 2):
                image_lines.append(f"{study_dir}image{n}.png")
                if images:
                    write_image(base / f"{study_dir}image{n}.png", "rgb" if n == 2 else "gray")
        (folder / f"{part}_image_paths.csv").write_text("\n".join(image_lines) + "\n")
        (folder / f"{part}_labeled_studies.csv").write_text("\n".join(study_lines) + "\n")
    return folder
