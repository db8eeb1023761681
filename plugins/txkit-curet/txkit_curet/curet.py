"""`curet`: the CUReT texture database (Dana et al. 1999) as distributed, 61 classes ``sample01`` ... ``sample61``.

Two layouts are read as they come:

- the original images: ``sample01/01-001.bmp`` (640x480 colour photographs, the sample in the middle);
- the widely used cropped grey version "curetgrey" (Varma & Zisserman): ``curetgrey/sample01/01-001.png``,
  already 200x200 crops of the textured region.

Suzuki et al. (2018) "cropped the textured regions and resized them into 224x224". The loader converts to 8-bit
grey, takes the centre square of ``crop`` pixels (200 by default, the curetgrey crop; images no larger are left
whole) and resizes it bicubically to ``size`` (224). The splits declare that crop to ``file_split``
(``transform_key``), so the disk image cache holds one set of images per crop and size. Images are photographs
of one physical sample per class, so there are no patients: splits are seeded and class-proportional over images.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np

from txkit import (DataError, Field, Options, Split, TxDataset, drop_unreadable, file_split, group_split, require_dir,
                   validate_options)

NAME = "curet"
CLASSES = [f"sample{k:02d}" for k in range(1, 62)]
LAYOUT = "sample01/01-001.bmp ... sample61/61-205.bmp (original CUReT) or curetgrey/sample01/01-001.png ..."
SAMPLE_FOLDER = re.compile(r"^sample(\d{2})$")
IMAGE_FILE = re.compile(r"^(\d{2})-(\d{3})\.(bmp|png)$", re.IGNORECASE)


class CuretOptions(Options):
    """Options of ``curet`` (``--data-option KEY=VALUE``)."""

    crop: int = Field(200, ge=0, description="side of the centre square taken from each image, in pixels "
                      "(images no larger are left whole)")
    size: int = Field(224, ge=8, description="side the crop is resized to (bicubic), in pixels")
    seed: int = Field(0, description="seed of the class-proportional split over images")
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="fraction of each class's images that becomes val")
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="fraction of each class's images that becomes "
                                 "test")
    skip_bad_images: bool = Field(False, description="open every image once and skip (count) unreadable ones; "
                                  "txkit train --skip-bad-images sets it")


def build(root=None, **options) -> TxDataset:
    """CUReT under ``root``; options: :class:`CuretOptions`."""
    o = validate_options(f"dataset {NAME!r}", CuretOptions, options, DataError)
    crop, size, seed, val, test = o["crop"], o["size"], o["seed"], o["val_fraction"], o["test_fraction"]
    folder = find_folder(root)
    paths, labels = scan(folder)
    skipped = 0
    if o["skip_bad_images"]:
        paths, (labels,), skipped = drop_unreadable(paths, labels)
    labels = np.asarray(labels, dtype=np.int64)
    parts = group_split(len(paths), None, labels, seed, val=val, test=test)
    splits = {name: textures([paths[i] for i in rows], labels[rows], crop, size)
              for name, rows in parts.items() if len(rows) or name == "train"}
    found = sorted({CLASSES[k] for k in labels})
    info = {"root": str(folder), "samples_found": len(found), "crop": crop, "image_size": size,
            "skipped_images": skipped, "formats": sorted({p.suffix.lower() for p in paths})}
    return TxDataset(NAME, list(CLASSES), splits, description=f"CUReT textures under {folder}", info=info)


def find_folder(root) -> Path:
    """The folder holding sampleNN/: `data_root` itself or one sub-folder of it (e.g. curetgrey/)."""
    folder = require_dir(root, LAYOUT)
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if any(SAMPLE_FOLDER.match(p.name) for p in candidate.iterdir() if p.is_dir()):
            return candidate
    raise DataError(f"{folder / 'sample01'}: folder not found; `data_root` must hold {LAYOUT}")


def scan(folder: Path) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for sample in sorted(p for p in folder.iterdir() if p.is_dir() and SAMPLE_FOLDER.match(p.name)):
        number = int(SAMPLE_FOLDER.match(sample.name).group(1))
        if not 1 <= number <= len(CLASSES):
            raise DataError(f"{sample}: CUReT has sample01 ... sample61; remove or rename this folder")
        for path in sorted(sample.iterdir()):
            match = IMAGE_FILE.match(path.name)
            if match is None:
                continue
            if int(match.group(1)) != number:
                raise DataError(f"{path}: file of sample {match.group(1)} inside {sample.name}/; expected "
                                f"{number:02d}-NNN.{match.group(3)}")
            paths.append(path)
            labels.append(number - 1)
    if not paths:
        raise DataError(f"{folder}: no NN-NNN.bmp or NN-NNN.png images in the sampleNN folders; expected {LAYOUT}")
    return paths, labels


def crop_and_resize(image: np.ndarray, crop: int, size: int) -> np.ndarray:
    """Centre square of ``crop`` pixels (0: the largest centred square), then bicubic resize to ``size``.

    8-bit images stay 8-bit; other values (a 16-bit file's, for the intensity rules) are resized as floats and
    kept within the square's range."""
    from PIL import Image

    height, width = image.shape
    side = min(height, width) if crop == 0 else min(crop, height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    if square.dtype != np.uint8:
        resized = Image.fromarray(square.astype(np.float32)).resize((size, size), Image.BICUBIC)
        return np.clip(np.asarray(resized, dtype=np.float64), square.min(), square.max())
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def crop_key(crop: int, size: int) -> str:
    """The crop's name in the image cache key: a new crop or size gives new cached images."""
    return f"curet-centre-crop:{crop},bicubic:{size}"


def textures(paths: list[Path], labels: np.ndarray, crop: int, size: int) -> Split:
    return file_split(paths, labels, transform=partial(crop_and_resize, crop=crop, size=size),
                      transform_key=crop_key(crop, size))
