"""A dataset factory returns a txkit TxDataset: class names, the task, and train/val/test splits."""

import numpy as np

from txkit.datasets.base import Split, TxDataset
from txkit.errors import DataError

CLASSES = ["horizontal", "vertical"]


def build(root=None, seed=0, size=32, per_class=40, **unknown) -> TxDataset:
    if unknown:
        raise DataError(f"stripes: unknown option(s) {', '.join(unknown)}; valid: seed, size, per_class")
    if root:
        raise DataError("stripes is generated in memory and takes no --data-root")
    rng = np.random.default_rng(int(seed))
    splits = {name: _split(rng, int(size), int(per_class)) for name in ("train", "val", "test")}
    return TxDataset("stripes", CLASSES, splits, description="noisy stripes", info={"image_size": int(size)})


def _split(rng: np.random.Generator, size: int, per_class: int) -> Split:
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    period = rng.uniform(4, 10, size=len(labels))
    grid = np.arange(size)
    images = []
    for label, p in zip(labels, period):
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * grid / p)
        image = np.tile(wave[:, None] if label == 0 else wave[None, :], (1, size) if label == 0 else (size, 1))
        image = np.clip(image + rng.normal(0, 0.6, image.shape), 0, 1)
        images.append((image * 255).astype(np.uint8))
    images = np.stack(images)
    return Split(lambda i: images[i], labels)
