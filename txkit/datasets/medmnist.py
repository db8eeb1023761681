"""`medmnist`: one MedMNIST ``.npz`` file (pneumoniamnist.npz, chestmnist.npz, their _64/_128/_224 variants)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from txkit.datasets.base import Split, TxDataset
from txkit.errors import DataError

KNOWN_CLASSES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal-or-benign"],
    "chestmnist": ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"],
}
SPLITS = {"train": "train", "val": "val", "test": "test"}
MIN_SIZE = 64  # 28x28 images are enlarged so that ImageNet backbones keep a spatial map


def build(root=None, image_size=None, **unknown) -> TxDataset:
    if unknown:
        raise DataError(f"medmnist: unknown option(s) {', '.join(sorted(unknown))}; valid: image_size")
    path = _npz_path(root)
    arrays = _load(path)
    splits, multilabel = {}, False
    for name in SPLITS:
        images, labels = _gray(arrays[f"{name}_images"]), np.asarray(arrays[f"{name}_labels"])
        multilabel = labels.ndim == 2 and labels.shape[1] > 1
        labels = labels.astype(np.float32) if multilabel else labels.reshape(-1).astype(np.int64)
        splits[name] = Split(lambda i, im=images: im[i], labels,
                             ids=[f"{path.name}:{name}[{i}]" for i in range(len(labels))])
    classes = _classes(path, splits, multilabel)
    native = splits["train"].image(0).shape[0]
    info = {"npz": str(path), "native_size": native, "image_size": int(image_size or max(native, MIN_SIZE))}
    return TxDataset("medmnist", classes, splits, task="multilabel" if multilabel else "multiclass",
                     description=f"MedMNIST file {path.name}", info=info)


def _npz_path(root) -> Path:
    if not root:
        raise DataError("medmnist needs --data-root pointing to a MedMNIST .npz file, e.g. pneumoniamnist.npz")
    path = Path(root).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found; --data-root must be a MedMNIST .npz file (e.g. pneumoniamnist.npz)")
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


def _gray(images: np.ndarray) -> np.ndarray:
    if images.ndim == 4:  # (N, H, W, 3) colour MedMNIST sets: ITU-R 601 luminance
        images = (images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
        images = images.round().clip(0, 255)
    return images.astype(np.uint8)


def _classes(path: Path, splits: dict, multilabel: bool) -> list[str]:
    stem = path.stem.split("_")[0]
    labels = splits["train"].labels
    count = labels.shape[1] if multilabel else int(max(s.labels.max() for s in splits.values())) + 1
    known = KNOWN_CLASSES.get(stem)
    return known if known and len(known) == count else [str(k) for k in range(count)]
