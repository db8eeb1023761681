"""`medmnist`: one MedMNIST ``.npz`` file (pneumoniamnist.npz, chestmnist.npz, their _64/_128/_224 variants).

Pixels: uint8 as stored; uint16 divided by 65535 (x 255); other integer types only when they hold 0..255; floats
only in [0, 1] (x 255). Negative, non-finite or out-of-range values are refused; colour (N, H, W, 3) arrays become
ITU-R 601 luminance. Labels: one per image; single-label classes are the file's known names (pneumoniamnist ...)
or 0..max when every class occurs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from txkit.datasets.base import Split, TxDataset, check_pixel_range
from txkit.errors import DataError
from txkit.options import Field, Options, validate_options

KNOWN_CLASSES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal-or-benign"],
    "chestmnist": ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"],
}
SPLITS = {"train": "train", "val": "val", "test": "test"}
MIN_SIZE = 64  # 28x28 images are enlarged so that ImageNet backbones keep a spatial map


class MedmnistOptions(Options):
    """Options of ``medmnist`` (``--data-option KEY=VALUE``); ``--data-root`` is the .npz file."""

    image_size: Optional[int] = Field(None, ge=1, description="input size in pixels for training (default: the "
                                      "file's native size, at least 64; 28x28 images are enlarged)")


def build(root=None, **options) -> TxDataset:
    """One MedMNIST .npz file with its train/val/test arrays; options: :class:`MedmnistOptions`."""
    image_size = validate_options("dataset 'medmnist'", MedmnistOptions, options, DataError)["image_size"]
    path = _npz_path(root)
    arrays = _load(path)
    splits, multilabel = {}, False
    for name in SPLITS:
        images, labels = arrays[f"{name}_images"], np.asarray(arrays[f"{name}_labels"])
        _check_counts(path, name, images, labels)
        load = _loader(path, f"{name}_images", images)
        multilabel = labels.ndim == 2 and labels.shape[1] > 1
        labels = labels.astype(np.float32) if multilabel else _class_indices(path, f"{name}_labels", labels)
        splits[name] = Split(load, labels, ids=[f"{path.name}:{name}[{i}]" for i in range(len(labels))])
    if not len(splits["train"]):
        raise DataError(f"{path}: train_images holds no image; the file is damaged: download it again")
    classes = _classes(path, splits, multilabel)
    native = splits["train"].image(0).shape[0]
    info = {"npz": str(path), "native_size": native, "image_size": int(image_size or max(native, MIN_SIZE))}
    return TxDataset("medmnist", classes, splits, task="multilabel" if multilabel else "multiclass",
                     description=f"MedMNIST file {path.name}", info=info)


def _npz_path(root) -> Path:
    if not root:
        raise DataError("medmnist needs `data_root` pointing to a MedMNIST .npz file, e.g. pneumoniamnist.npz")
    path = Path(root).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found; `data_root` must be a MedMNIST .npz file (e.g. pneumoniamnist.npz)")
    return path


def _load(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}); download it again") from None
    missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}; expected train/val/test _images and _labels")
    return arrays


def _check_counts(path: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim not in (3, 4):
        raise DataError(f"{path}: {name}_images has shape {images.shape}; expected (N, H, W) or (N, H, W, 3)")
    count = len(labels) if labels.ndim else 1
    if count != len(images):
        raise DataError(f"{path}: {name}_images holds {len(images)} images but {name}_labels {count} labels; "
                        f"the file is damaged: download it again")


def _loader(path: Path, key: str, images: np.ndarray):
    """image(i) as 8-bit grey by the pixel rules above: the whole array is checked once, each image converted
    when it is loaded (a float copy of a large _224 file would not fit in memory)."""
    top = 255.0 if images.dtype == np.uint8 else _pixel_top(path, key, images)

    def load(i: int) -> np.ndarray:
        image = images[i]
        if images.ndim == 4:
            return _luminance(image, top)
        if image.dtype == np.uint8:
            return image
        return np.rint(image * (255.0 / top)).astype(np.uint8)

    return load


def _pixel_top(path: Path, key: str, images: np.ndarray) -> float:
    """The value that maps to 255 (the stored bit depth's maximum), after refusing anything out of range."""
    source = f"{path}: {key}"
    if images.dtype == np.uint16:
        top, rule = 65535.0, ""
    elif np.issubdtype(images.dtype, np.integer):
        top, rule = 255.0, f"{images.dtype} images must hold 8-bit values 0..255 (or be uint16)"
    elif np.issubdtype(images.dtype, np.floating):
        top, rule = 1.0, "float images must lie in [0, 1]"
    else:
        raise DataError(f"{source} has dtype {images.dtype}; expected uint8, uint16 or float in [0, 1]")
    if images.size:
        check_pixel_range(images.min(), images.max(), top, source, rule)
    return top


def _luminance(rgb: np.ndarray, top: float) -> np.ndarray:
    """(H, W, 3) colour MedMNIST images to ITU-R 601 luminance."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32) * np.float32(255.0 / top)
    return np.rint(rgb[..., :3].astype(np.float32) @ weights).clip(0, 255).astype(np.uint8)


def _class_indices(path: Path, key: str, labels: np.ndarray) -> np.ndarray:
    flat = labels.reshape(-1)
    whole = np.issubdtype(flat.dtype, np.integer) or (np.isfinite(flat).all() and (flat == np.round(flat)).all())
    if not whole:
        i = int(np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))[0])
        raise DataError(f"{path}: {key}[{i}] is {flat[i]}; single-label labels must be whole class numbers")
    return flat.astype(np.int64)


def _classes(path: Path, splits: dict, multilabel: bool) -> list[str]:
    stem = path.stem.split("_")[0]
    known = KNOWN_CLASSES.get(stem)
    if multilabel:
        count = splits["train"].labels.shape[1]
        return known if known and len(known) == count else [str(k) for k in range(count)]
    labels = {name: split.labels for name, split in splits.items() if len(split)}
    if known:
        _check_known(path, labels, known)
        return known
    return _check_contiguous(path, labels)


def _check_known(path: Path, labels: dict, known: list[str]) -> None:
    for name, values in labels.items():
        bad = np.flatnonzero((values < 0) | (values >= len(known)))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{path}: {name}_labels[{i}] is {values[i]}, but {path.stem.split('_')[0]} has classes "
                            f"0..{len(known) - 1} ({', '.join(known)}); fix the label or rename the file")


def _check_contiguous(path: Path, labels: dict) -> list[str]:
    """Classes 0..max only when every class occurs (as for csv integer labels): a gap is a stray label."""
    every = np.concatenate(list(labels.values()))
    if every.min() < 0:
        raise DataError(f"{path}: has label {every.min()}; single-label labels are classes 0, 1, 2, ...")
    top = int(every.max())
    absent = sorted(set(range(top + 1)) - set(np.unique(every).tolist()))
    if absent:
        name, values = next((n, v) for n, v in labels.items() if (v > absent[0]).any())
        i = int(np.flatnonzero(values > absent[0])[0])
        raise DataError(f"{path}: {name}_labels[{i}] is {values[i]}, but no image has label {absent[0]}; labels "
                        f"define classes 0..max only when every class occurs: fix the labels")
    return [str(k) for k in range(top + 1)]
