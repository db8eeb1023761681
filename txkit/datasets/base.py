"""The dataset contract.

A dataset factory returns a :class:`TxDataset`: class names, the task (``multiclass`` or ``multilabel``)
and up to three :class:`Split` objects (``train``, ``val``, ``test``). A split knows its labels, groups
(patients) and ids without opening an image; ``image(i)`` loads one image as 8-bit grayscale (H, W).
Labels are integers for ``multiclass`` and float vectors for ``multilabel`` (NaN = ignore in the loss).
Given ids name images (usually their paths): one id never sits in two splits (:meth:`TxDataset.check_splits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from txkit.errors import DataError

SPLITS = ("train", "val", "test")
PIXEL_FIX = "store images as 8- or 16-bit unsigned integers, or as floats in [0, 1]"


class Split:
    """One split: a lazy image loader plus labels, groups and ids known up front.

    ``groups`` are patients (splits and subsets never divide one); ``studies`` are optional study ids for
    datasets scored per study (MURA): ``txkit evaluate`` then also reports study-level metrics by the mean
    image probability of each study.

    Images read from files: build the split with :func:`txkit.datasets.files.file_split`, which sets the three
    keywords below. ``read`` gives an image's stored values (modality units for DICOM) with their info dict, for
    the intensity rules; ``sources`` are the files behind the images (one per image), the disk image cache's key
    (:mod:`txkit.data.cache`): a split without them is never cached on disk. ``transform_key`` names, with its
    parameters, whatever ``load`` and ``read`` do to a file's pixels (a crop); it enters that key. A split with
    ``sources`` promises that its pixels follow from those files and that key alone.

    ``metadata`` is optional per-image information for subgroup analysis (``txkit evaluate --by sex``): a dict
    of column name -> one value per image (sex, an age bin, the view), as strings; missing values are best given
    as ``"unknown"`` (:mod:`txkit.datasets.metadata` bins ages). It never reaches training. ``split.metadata``
    is always a dict (empty without metadata), and :meth:`subset` carries it.
    """

    def __init__(self, load: Callable[[int], np.ndarray], labels: np.ndarray,
                 groups: Sequence[str] | None = None, ids: Sequence[str] | None = None,
                 studies: Sequence[str] | None = None,
                 read: Callable[[int], tuple[np.ndarray, dict]] | None = None,
                 sources: Sequence[str] | None = None, transform_key: str | None = None,
                 metadata: dict[str, Sequence] | None = None):
        self._load = load
        self._read = read
        self.sources = list(sources) if sources is not None else None
        self.transform_key = transform_key
        self.labels = np.asarray(labels)
        self.groups = np.asarray(groups) if groups is not None else None
        # Default ids (row numbers) repeat across splits, so only given ids name an image for check_splits.
        self.named = ids is not None
        self.ids = list(ids) if ids is not None else [str(i) for i in range(len(self.labels))]
        self.studies = np.asarray(studies) if studies is not None else None
        self.metadata = _metadata(metadata, len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        return self._load(index)

    def values(self, index: int) -> tuple[np.ndarray, dict]:
        """The image's stored values and their info (``unit``, ``modality``, ``photometric``, ...); splits without
        a ``read`` function hold 8-bit images."""
        if self._read is not None:
            return self._read(index)
        return self._load(index), {"unit": "8-bit", "modality": None, "photometric": None}

    def subset(self, indices: Sequence[int]) -> "Split":
        indices = np.asarray(indices, dtype=np.int64)
        read = self._read
        part = Split(lambda i: self._load(int(indices[i])), self.labels[indices],
                     self.groups[indices] if self.groups is not None else None,
                     [self.ids[i] for i in indices],
                     self.studies[indices] if self.studies is not None else None,
                     read=(lambda i: read(int(indices[i]))) if read is not None else None,
                     sources=[self.sources[i] for i in indices] if self.sources is not None else None,
                     transform_key=self.transform_key,
                     metadata={column: values[indices] for column, values in self.metadata.items()})
        part.named = self.named
        return part

    def with_labels(self, labels) -> "Split":
        """The same images (pixels, ids, groups, metadata) with other labels: an external dataset's labels in a
        run's class order (:mod:`txkit.run.external`)."""
        labels = np.asarray(labels)
        if len(labels) != len(self):
            raise ValueError(f"{len(labels)} labels for a split of {len(self)} images")
        part = self.subset(np.arange(len(self)))
        part.labels = labels
        return part


def concat_splits(parts: Sequence[Split]) -> Split:
    """One split holding the images of ``parts`` in order (every split of a dataset, for an external evaluation
    on all of its images). Groups, studies, sources and metadata columns are kept where every part has them."""
    parts = list(parts)
    if not parts:
        raise ValueError("concat_splits needs at least one split")
    owner = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
    local = np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts])

    def load(i: int) -> np.ndarray:
        return parts[owner[i]].image(int(local[i]))

    def read(i: int) -> tuple[np.ndarray, dict]:
        return parts[owner[i]].values(int(local[i]))

    def joined(attribute: str):
        values = [getattr(p, attribute) for p in parts]
        return None if any(v is None for v in values) else np.concatenate([np.asarray(v) for v in values])

    keys = {p.transform_key for p in parts}
    sources = None if any(p.sources is None for p in parts) or len(keys) > 1 else \
        [s for p in parts for s in p.sources]
    columns = [c for c in parts[0].metadata if all(c in p.metadata for p in parts)]
    whole = Split(load, np.concatenate([p.labels for p in parts]), joined("groups"),
                  [i for p in parts for i in p.ids], joined("studies"), read=read, sources=sources,
                  transform_key=next(iter(keys)) if sources is not None else None,
                  metadata={c: np.concatenate([np.asarray(p.metadata[c]) for p in parts]) for c in columns})
    whole.named = all(p.named for p in parts)
    return whole


def _metadata(metadata, n: int) -> dict[str, np.ndarray]:
    """Checked per-image metadata: a dict of column -> array of ``n`` values."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"Split(metadata=...) must be a dict of column -> one value per image, got "
                        f"{type(metadata).__name__}")
    out = {}
    for column, values in metadata.items():
        values = np.asarray(values)
        if values.ndim != 1 or len(values) != n:
            raise ValueError(f"Split metadata column {column!r} has shape {values.shape} for {n} images; give one "
                             f"value per image")
        out[str(column)] = values
    return out


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

    def check_splits(self) -> None:
        """Fail with one line when one image (the same id) sits in two splits.

        Two splits with identical id lists are one split reused on purpose (CheXpert's thesis protocol uses
        valid.csv as both val and test), so they are not compared.
        """
        named = [(name, split) for name, split in self.splits.items() if split.named and len(split)]
        for k, (first, a) in enumerate(named):
            seen = set(a.ids)
            for second, b in named[k + 1:]:
                if a.ids == b.ids:
                    continue
                shared = next((i for i in b.ids if i in seen), None)
                if shared is not None:
                    raise DataError(f"{shared}: in both the {first} and {second} splits of {self.name}; one image "
                                    f"must sit in one split: remove the duplicate from the dataset's lists")


def load_gray(path: str | Path, missing: str = "", unreadable: str = "") -> np.ndarray:
    """Read any image file as 8-bit grayscale (H, W) by the pixel rules of :func:`to_gray_uint8`.

    DICOM files (:func:`txkit.datasets.dicom.is_dicom`) are read in modality units and shown by the default DICOM
    display rule (:func:`txkit.datasets.dicom.dicom_to_uint8`: the header's window, else for CT in HU the fixed
    range -1024..3071, else the stored bit depth's range after the modality LUT).

    Errors name the file and what is wrong; ``missing`` and ``unreadable`` append the caller's advice (a dataset
    knows its path column and its skip_bad_images option; ``txkit predict`` has neither).
    """
    from PIL import Image, UnidentifiedImageError

    from txkit.datasets.dicom import is_dicom

    if is_dicom(path):
        return _load_dicom_gray(path, missing, unreadable)
    try:
        with Image.open(path) as img:
            img.load()
            return to_gray_uint8(img, path)
    except FileNotFoundError:
        raise DataError(_advised(f"{path}: image file not found", missing)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(_advised(f"{path}: unreadable or truncated image ({exc})", unreadable)) from None


def _load_dicom_gray(path, missing: str, unreadable: str) -> np.ndarray:
    from txkit.datasets.dicom import dicom_to_uint8, read_dicom

    try:
        values, info = read_dicom(path)
    except FileNotFoundError:
        raise DataError(_advised(f"{path}: image file not found", missing)) from None
    except DataError as exc:
        raise DataError(_advised(str(exc), unreadable)) from None
    return dicom_to_uint8(values, info)


def read_intensity(path: str | Path, missing: str = "", unreadable: str = "") -> tuple[np.ndarray, dict]:
    """An image's values in its own units, for the intensity rules (``txkit.datasets.intensity``) and statistics.

    DICOM: :func:`txkit.datasets.dicom.read_dicom` (modality units, "HU" for CT; ``info`` is its whole header
    dict, ``format`` "dicom"). Other files (``format`` "image"): 16-bit and 32-bit integer images as stored (unit
    "16-bit" / "32-bit"; mode I counts as 16-bit when every value fits 16 bits), float images as stored ("float"),
    everything else as the ``uint8`` grey :func:`load_gray` gives ("8-bit"). ``info`` always has ``unit``,
    ``modality`` and ``photometric`` (None outside DICOM). Errors are :class:`DataError` naming the file, with the
    caller's advice appended as in :func:`load_gray`.
    """
    from PIL import Image, UnidentifiedImageError

    from txkit.datasets.dicom import is_dicom, read_dicom

    if is_dicom(path):
        try:
            return read_dicom(path)
        except FileNotFoundError:
            raise DataError(_advised(f"{path}: image file not found", missing)) from None
        except DataError as exc:
            raise DataError(_advised(str(exc), unreadable)) from None
    plain = {"format": "image", "modality": None, "photometric": None}
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith("I;16") or img.mode == "I":
                values = np.asarray(img, dtype=np.float64)
                wide = img.mode == "I" and values.size and values.max() > 65535
                return values, {"unit": "32-bit" if wide else "16-bit", **plain}
            if img.mode == "F":
                return np.asarray(img, dtype=np.float64), {"unit": "float", **plain}
            return to_gray_uint8(img, path), {"unit": "8-bit", **plain}
    except FileNotFoundError:
        raise DataError(_advised(f"{path}: image file not found", missing)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(_advised(f"{path}: unreadable or truncated image ({exc})", unreadable)) from None


def probe_intensity(path: str | Path) -> dict | None:
    """The ``info`` of :func:`read_intensity` from the file's header (DICOM header, PIL mode) without decoding
    pixels, or None when the header cannot tell: unreadable files, and mode I images (whose unit depends on their
    largest value); read those with :func:`read_intensity`."""
    from PIL import Image

    from txkit.datasets.dicom import is_dicom, read_header

    try:
        if is_dicom(path):
            return read_header(path)
        with Image.open(path) as img:
            mode = img.mode
    except Exception:
        return None
    if mode == "I":
        return None
    unit = "16-bit" if mode.startswith("I;16") else "float" if mode == "F" else "8-bit"
    return {"unit": unit, "format": "image", "modality": None, "photometric": None}


def _advised(message: str, advice: str) -> str:
    return f"{message}; {advice}" if advice else message


def to_gray_uint8(img, path: str | Path = "image") -> np.ndarray:
    """8-bit grey that keeps relative intensities across images (never a per-image min-max stretch).

    16-bit modes are divided by 65535; mode I (32-bit integers) by 65535 when its values fit 16 bits, else by
    2**31 - 1; mode F (float) must lie in [0, 1] and is multiplied by 255. Negative or non-finite values are refused.
    RGB, RGBA, LA and palette images become ITU-R 601 luminance; 8-bit grey is kept as is.
    """
    if img.mode.startswith("I;16"):
        return scale_to_uint8(np.asarray(img, dtype=np.float64), 65535, path)
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        return scale_to_uint8(arr, 65535 if arr.size and arr.max() <= 65535 else 2**31 - 1, path)
    if img.mode == "F":
        return scale_to_uint8(np.asarray(img, dtype=np.float64), 1.0, path, "float images must lie in [0, 1]")
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA").convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.uint8)


def scale_to_uint8(values: np.ndarray, top: float, source, rule: str = "") -> np.ndarray:
    """``values / top * 255`` rounded, for pixel values in [0, top]; anything else is refused in one line."""
    if values.size:
        check_pixel_range(values.min(), values.max(), top, source, rule)
    return np.rint(values * (255.0 / top)).astype(np.uint8)


def check_pixel_range(low, high, top: float, source, rule: str = "") -> None:
    """Refuse pixel values outside [0, top] in one line (NaN propagates into min and max, so one pass finds it)."""
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{source}: has NaN or infinite pixel values; replace the image data")
    if low < 0:
        raise DataError(f"{source}: has negative pixel values (min {low:g}); {PIXEL_FIX}")
    if high > top:
        raise DataError(f"{source}: pixel values up to {high:g}, but {rule or f'the limit is {top:g}'}; {PIXEL_FIX}")
