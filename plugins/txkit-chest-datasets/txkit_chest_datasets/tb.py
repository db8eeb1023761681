"""`montgomery` and `shenzhen`: the NLM tuberculosis chest X-ray sets (Jaeger et al. 2014) as distributed.

    MontgomerySet/CXR_png/MCUCXR_0001_0.png       ChinaSet_AllFiles/CXR_png/CHNCXR_0001_0.png

The last digit of the file name is the label (0 normal, 1 TB). Each file is one patient. Splits are seeded and
class-proportional, 70/20/10 as in Sivaramakrishnan et al. (2018).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from txkit import DataError, TxDataset, drop_unreadable, file_split, group_split, require_dir, validate_options
from txkit_chest_datasets.options import TbOptions

CLASSES = ["normal", "tuberculosis"]
SETS = {"montgomery": ("MontgomerySet", "MCUCXR", "138 images: 80 normal, 58 TB"),
        "shenzhen": ("ChinaSet_AllFiles", "CHNCXR", "662 images: 326 normal, 336 TB")}


def build_montgomery(root=None, **options) -> TxDataset:
    return build("montgomery", root, **options)


def build_shenzhen(root=None, **options) -> TxDataset:
    return build("shenzhen", root, **options)


def build(name: str, root=None, **options) -> TxDataset:
    """Montgomery or Shenzhen under ``root``; options: :class:`TbOptions`."""
    o = validate_options(f"dataset {name!r}", TbOptions, options, DataError)
    val, test, seed, image_size = o["val_fraction"], o["test_fraction"], o["seed"], o["image_size"]
    folder = image_folder(name, root)
    paths, labels = scan(name, folder)
    skipped = 0
    if o["skip_bad_images"]:
        paths, (labels,), skipped = drop_unreadable(paths, labels)
    labels, patients = np.asarray(labels, dtype=np.int64), [p.stem[:-2] for p in paths]
    parts = group_split(len(paths), patients, labels, seed, val=val, test=test)
    splits = {split: file_split([paths[i] for i in rows], labels[rows], [patients[i] for i in rows])
              for split, rows in parts.items() if len(rows) or split == "train"}
    info = {"root": str(folder), "skipped_images": skipped, "official_counts": SETS[name][2],
            "split": f"{1 - val - test:g}/{val:g}/{test:g} train/val/test, class-proportional, seed {seed}"}
    if image_size:
        info["image_size"] = image_size
    return TxDataset(name, list(CLASSES), splits, description=f"{SETS[name][0]} tuberculosis chest X-rays",
                     info=info)


def layout(name: str) -> str:
    folder, prefix, _ = SETS[name]
    return f"{folder}/CXR_png/{prefix}_0001_0.png ... (last digit: 0 normal, 1 TB)"


def image_folder(name: str, root) -> Path:
    """CXR_png/ under `data_root`, under `data_root`/<official folder>/, or `data_root` itself."""
    folder = require_dir(root, layout(name))
    for candidate in (folder / "CXR_png", folder / SETS[name][0] / "CXR_png"):
        if candidate.is_dir():
            return candidate
    if folder.name == "CXR_png":
        return folder
    raise DataError(f"{folder / 'CXR_png'}: folder not found; `data_root` must point to {layout(name)}")


def scan(name: str, folder: Path) -> tuple[list[Path], list[int]]:
    prefix = SETS[name][1]
    pattern = re.compile(rf"^{prefix}_\d{{4}}_([01])\.png$", re.IGNORECASE)
    paths, labels = [], []
    for path in sorted(folder.glob("*.png")):
        match = pattern.match(path.name)
        if match is None:
            raise DataError(f"{path}: file name does not follow {prefix}_NNNN_0.png / {prefix}_NNNN_1.png, so it "
                            f"has no label; move it out of {folder}")
        paths.append(path)
        labels.append(int(match.group(1)))
    if not paths:
        raise DataError(f"{folder}: no {prefix}_NNNN_L.png images; expected {layout(name)}")
    return paths, labels
