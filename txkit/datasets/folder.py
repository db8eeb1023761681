"""`imagefolder`: one sub-folder per class, optionally under train/ val/ test/."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import model_validator

from txkit.datasets.base import TxDataset
from txkit.datasets.files import drop_unreadable, file_split, group_split, list_images, require_dir
from txkit.errors import DataError
from txkit.options import Field, Options, check_fractions, validate_options

LAYOUT = "ROOT/CLASS/image.png (one folder per class) or ROOT/train/CLASS/..., ROOT/val/CLASS/..., ROOT/test/CLASS/..."


class FolderOptions(Options):
    """Options of ``imagefolder`` (``--data-option KEY=VALUE``)."""

    seed: int = Field(0, description="seed of the class-proportional split of the images into train/val/test")
    val_fraction: float = Field(0.15, ge=0.0, le=0.9, description="fraction of the images that becomes val "
                                "(per class) when ROOT has no val/ folder")
    test_fraction: float = Field(0.15, ge=0.0, le=0.9, description="fraction of the images that becomes test "
                                 "(per class) when ROOT has no train/ folder; ignored with train/")
    skip_bad_images: bool = Field(False, description="open every image once and skip (count) unreadable ones; "
                                  "txkit train --skip-bad-images sets it")
    image_size: Optional[int] = Field(None, ge=1, description="suggested input size in pixels for training "
                                      "(recorded in the dataset info)")

    _fractions = model_validator(mode="after")(check_fractions)


def build(root=None, **options) -> TxDataset:
    """One folder per class (optionally under train/ val/ test/); options: :class:`FolderOptions`."""
    options = validate_options("dataset 'imagefolder'", FolderOptions, options, DataError)
    seed, val_fraction, test_fraction = options["seed"], options["val_fraction"], options["test_fraction"]
    skip_bad_images, image_size = options["skip_bad_images"], options["image_size"]
    folder = require_dir(root, LAYOUT)
    presplit = [s for s in ("train", "val", "test") if (folder / s).is_dir()]
    if presplit and "train" not in presplit:
        raise DataError(f"{folder}: has {'/'.join(presplit)}/ but no train/ folder; expected {LAYOUT}")
    classes = _classes(folder / "train" if presplit else folder)
    skipped = 0
    if presplit:
        splits = {}
        for name in presplit:
            paths, labels = _scan(folder / name, classes)
            paths, labels, bad = _maybe_verify(paths, labels, skip_bad_images)
            skipped += bad
            splits[name] = file_split(paths, labels)
        if "val" not in splits:
            splits.update(_split_train(splits.pop("train"), float(val_fraction), 0.0, int(seed)))
    else:
        paths, labels = _scan(folder, classes)
        paths, labels, skipped = _maybe_verify(paths, labels, skip_bad_images)
        splits = _split_train(file_split(paths, labels), float(val_fraction), float(test_fraction), int(seed))
    info = {"root": str(folder), "skipped_images": skipped}
    if image_size:
        info["image_size"] = int(image_size)
    return TxDataset("imagefolder", classes, splits, description=f"image folders under {folder}", info=info)


def _classes(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: no class folders; expected {LAYOUT}")
    return classes


def _scan(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for index, name in enumerate(classes):
        images = list_images(folder / name) if (folder / name).is_dir() else []
        if not images and folder.name not in ("val", "test"):
            raise DataError(f"{folder / name}: class folder has no images; add images or remove the folder")
        paths += images
        labels += [index] * len(images)
    extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes and not p.name.startswith("."))
    if extra:
        raise DataError(f"{folder}: class folder(s) {', '.join(extra)} are not in train/; every split needs the same classes")
    return paths, labels


def _maybe_verify(paths, labels, skip: bool):
    if not skip:
        return paths, labels, 0
    paths, (labels,), bad = drop_unreadable(paths, labels)
    return paths, labels, bad


def _split_train(split, val: float, test: float, seed: int) -> dict:
    parts = group_split(len(split), None, split.labels, seed, val, test)
    return {name: split.subset(idx) for name, idx in parts.items() if len(idx) or name == "train"}
