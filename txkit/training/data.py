"""From a TxDataset to tensors: resizing, in-memory caching of small splits, seeded fractions, loaders."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from txkit.datasets.base import Split, TxDataset
from txkit.errors import DataError, TxkitError

CACHE_LIMIT_BYTES = 2 * 1024**3


class TensorSplit(Dataset):
    """Yields (1, S, S) float images in [0, 1] and labels; caches resized images when the split is small."""

    def __init__(self, split: Split, size: int, task: str):
        self.split, self.size, self.task = split, size, task
        self._cache: dict[int, np.ndarray] | None = {} if len(split) * size * size <= CACHE_LIMIT_BYTES else None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        image = self._cache.get(index) if self._cache is not None else None
        if image is None:
            image = resize_gray(self.split.image(index), self.size)
            if self._cache is not None:
                self._cache[index] = image
        x = torch.tensor(image, dtype=torch.float32).div_(255.0).unsqueeze(0)
        label = self.split.labels[index]
        y = torch.as_tensor(label, dtype=torch.float32 if self.task == "multilabel" else torch.long)
        return x, y


def resize_gray(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape == (size, size):
        return image
    from PIL import Image

    # Bicubic enlargement as in Suzuki et al. (32x32 ROIs enlarged to 224).
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def fraction_indices(split: Split, fraction: float, seed: int, task: str) -> np.ndarray:
    """A class-proportional, seeded subset of a split (at least one image per present class)."""
    if not 0 < fraction <= 1:
        raise TxkitError(f"`fraction` must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(len(split))
    strata = split.labels if task == "multiclass" else label_strata(split.labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        keep = max(1, int(round(fraction * len(members))))
        chosen.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(chosen))


def label_strata(labels: np.ndarray) -> np.ndarray:
    # Stratify multi-label data by the first positive label (-1 for none).
    positive = np.nan_to_num(labels, nan=0.0) > 0.5
    return np.where(positive.any(axis=1), positive.argmax(axis=1), -1)


def train_batches(n: int, batch_size: int, order: list[int] | None = None) -> list[list[int]]:
    """Batches of ``order`` (default 0..n-1); a last batch of one image joins the one before it, because
    batch-norm cannot train on a single image. Every image is still seen once per epoch."""
    order = list(range(n)) if order is None else order
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


class ShuffledBatches(Sampler):
    """The training batches of one epoch: a permutation that depends only on (seed, epoch), so a resumed
    run sees the same batches (the same permutation torch's RandomSampler draws from that generator)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed * 100_003 + epoch

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        return iter(train_batches(self.n, self.batch_size, order))

    def __len__(self) -> int:
        return len(train_batches(self.n, self.batch_size))


def resolve_workers(value: int | str, device) -> int:
    """``num_workers`` auto: 0 on CPU (workers compete with the model for the same cores), one per core up to 8
    when a GPU trains."""
    if value != "auto":
        return int(value)
    import os

    return min(8, os.cpu_count() or 1) if getattr(device, "type", device) == "cuda" else 0


def make_loader(data: TensorSplit, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, sampler: Sampler | None = None) -> DataLoader:
    """Training loaders (``shuffle``) use ShuffledBatches unless a batch ``sampler`` is given; evaluation
    keeps every image in order."""
    if shuffle:
        batches = sampler or ShuffledBatches(len(data), batch_size, seed, epoch)
        return DataLoader(data, batch_sampler=batches, num_workers=num_workers)
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def check_nonempty(dataset: TxDataset, names=("train", "val")) -> None:
    for name in names:
        if name in dataset.splits and len(dataset.splits[name]) == 0:
            raise DataError(f"dataset {dataset.name!r}: the {name} split is empty; check the data root")
    if "train" not in dataset.splits:
        raise DataError(f"dataset {dataset.name!r} has no train split")
