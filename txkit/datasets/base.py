"""The dataset contract.

A dataset factory returns a :class:`TxDataset`: class names, the task (``multiclass`` or ``multilabel``)
and up to three :class:`Split` objects (``train``, ``val``, ``test``). A split knows its labels, groups
(patients) and ids without opening an image; ``image(i)`` loads one image as 8-bit grayscale (H, W).
Labels are integers for ``multiclass`` and float vectors for ``multilabel`` (NaN = ignore in the loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from txkit.errors import DataError

SPLITS = ("train", "val", "test")


class Split:
    """One split: a lazy image loader plus labels, groups and ids known up front.

    ``groups`` are patients (splits and subsets never divide one); ``studies`` are optional study ids for
    datasets scored per study (MURA): ``txkit evaluate`` then also reports study-level metrics by the mean
    image probability of each study.
    """

    def __init__(self, load: Callable[[int], np.ndarray], labels: np.ndarray,
                 groups: Sequence[str] | None = None, ids: Sequence[str] | None = None,
                 studies: Sequence[str] | None = None):
        self._load = load
        self.labels = np.asarray(labels)
        self.groups = np.asarray(groups) if groups is not None else None
        self.ids = list(ids) if ids is not None else [str(i) for i in range(len(self.labels))]
        self.studies = np.asarray(studies) if studies is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        return self._load(index)

    def subset(self, indices: Sequence[int]) -> "Split":
        indices = np.asarray(indices, dtype=np.int64)
        return Split(lambda i: self._load(int(indices[i])), self.labels[indices],
                     self.groups[indices] if self.groups is not None else None,
                     [self.ids[i] for i in indices],
                     self.studies[indices] if self.studies is not None else None)


@dataclass
class TxDataset:
    name: str
    classes: list[str]
    splits: dict[str, Split]
    task: str = "multiclass"
    description: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"dataset {self.name!r} has no {name!r} split; it has: {', '.join(self.splits)}")
        return self.splits[name]

    def check_labels(self) -> None:
        """Fail with one line when a label is outside the class list."""
        for split_name, split in self.splits.items():
            if self.task == "multiclass" and len(split):
                bad = (split.labels < 0) | (split.labels >= self.num_classes)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise DataError(f"{split.ids[i]}: label {split.labels[i]} is out of range for "
                                    f"{self.num_classes} classes ({split_name} split); fix the label or the class list")


def load_gray(path: str | Path) -> np.ndarray:
    """Read any image file as 8-bit grayscale (H, W); RGB, RGBA and 16-bit images are converted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return to_gray_uint8(img)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found; check the data root or the path column") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc}); replace the file or pass "
                        f"--skip-bad-images to skip it") from None


def to_gray_uint8(img) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return scaled.round().astype(np.uint8)
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA").convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.uint8)
