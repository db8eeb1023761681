"""A dataset factory returns a txkit TxDataset: class names, the task, and train/val/test splits."""

import numpy as np

from txkit import DataError, Field, Options, Split, TxDataset, validate_options

CLASSES = ["horizontal", "vertical"]


class StripesOptions(Options):
    """The dataset's options: one field each, with a default and a help text (``txkit list dataset stripes``).
    txkit checks what the user gives against it (unknown names get a did-you-mean) before calling build()."""

    seed: int = Field(0, description="seed of the generator")
    size: int = Field(32, ge=8, description="image side in pixels")
    per_class: int = Field(40, ge=1, description="images per class in each split")


def build(root=None, **options) -> TxDataset:
    o = validate_options("dataset 'stripes'", StripesOptions, options, DataError)  # also when called directly
    if root:
        raise DataError("stripes is generated in memory and takes no `data_root`")
    rng = np.random.default_rng(o["seed"])
    splits = {name: _split(rng, o["size"], o["per_class"]) for name in ("train", "val", "test")}
    return TxDataset("stripes", CLASSES, splits, description="noisy stripes", info={"image_size": o["size"]})


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
