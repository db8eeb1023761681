"""`curet`: the CUReT texture database (Dana et al. 1999) as distributed, 61 classes ``sample01`` ... ``sample61``.

Two layouts are read as they come:

- the original images: ``sample01/01-001.bmp`` (640x480 colour photographs, the sample in the middle);
- the widely used cropped grey version "curetgrey" (Varma & Zisserman): ``curetgrey/sample01/01-001.png``,
  already 200x200 crops of the textured region.

Suzuki et al. (2018) "cropped the textured regions and resized them into 224x224". The loader converts to 8-bit
grey, takes the centre square of ``crop`` pixels (200 by default, the curetgrey crop; images no larger are left
whole) and resizes it bicubically to ``size`` (224). Images are photographs of one physical sample per class, so
there are no patients: splits are seeded and class-proportional over images.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from txkit.datasets.base import Split, TxDataset
from txkit.datasets.files import as_bool, drop_unreadable, group_split, load_image, require_dir
from txkit.errors import DataError

NAME = "curet"
CLASSES = [f"sample{k:02d}" for k in range(1, 62)]
LAYOUT = "sample01/01-001.bmp ... sample61/61-205.bmp (original CUReT) or curetgrey/sample01/01-001.png ..."
SAMPLE_FOLDER = re.compile(r"^sample(\d{2})$")
IMAGE_FILE = re.compile(r"^(\d{2})-(\d{3})\.(bmp|png)$", re.IGNORECASE)
OPTIONS = ("crop", "size", "seed", "val_fraction", "test_fraction", "skip_bad_images")


def build(root=None, crop=200, size=224, seed=0, val_fraction=0.15, test_fraction=0.15, skip_bad_images=False,
          **unknown) -> TxDataset:
    if unknown:
        raise DataError(f"{NAME}: unknown option(s) {', '.join(sorted(unknown))}; valid: {', '.join(OPTIONS)}")
    crop, size, seed = _int("crop", crop, 0), _int("size", size, 8), _int("seed", seed, None)
    val, test = _fraction("val_fraction", val_fraction), _fraction("test_fraction", test_fraction)
    folder = find_folder(root)
    paths, labels = scan(folder)
    skipped = 0
    if as_bool(skip_bad_images):
        paths, (labels,), skipped = drop_unreadable(paths, labels)
    labels = np.asarray(labels, dtype=np.int64)
    parts = group_split(len(paths), None, labels, seed, val=val, test=test)
    splits = {name: textures([paths[i] for i in rows], labels[rows], crop, size)
              for name, rows in parts.items() if len(rows) or name == "train"}
    found = sorted({CLASSES[k] for k in labels})
    info = {"root": str(folder), "samples_found": len(found), "crop": crop, "image_size": size,
            "skipped_images": skipped, "formats": sorted({p.suffix.lower() for p in paths})}
    return TxDataset(NAME, list(CLASSES), splits, description=f"CUReT textures under {folder}", info=info)


def _int(key: str, value, low: int | None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or (low is not None and number < low):
        bound = "an integer" if low is None else f"an integer >= {low}"
        raise DataError(f"{NAME}: option {key}={value!r} must be {bound}")
    return number


def _fraction(key: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0 <= number < 1:
        raise DataError(f"{NAME}: option {key}={value!r} must be a number in [0, 1)")
    return number


def find_folder(root) -> Path:
    """The folder holding sampleNN/: --data-root itself or one sub-folder of it (e.g. curetgrey/)."""
    folder = require_dir(root, LAYOUT)
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if any(SAMPLE_FOLDER.match(p.name) for p in candidate.iterdir() if p.is_dir()):
            return candidate
    raise DataError(f"{folder / 'sample01'}: folder not found; --data-root must hold {LAYOUT}")


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
    """Centre square of ``crop`` pixels (0: the largest centred square), then bicubic resize to ``size``."""
    from PIL import Image

    height, width = image.shape
    side = min(height, width) if crop == 0 else min(crop, height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def textures(paths: list[Path], labels: np.ndarray, crop: int, size: int) -> Split:
    return Split(lambda i: crop_and_resize(load_image(paths[i]), crop, size), labels, None,
                 [str(p) for p in paths])
