"""From a TxDataset's splits to tensors: TensorSplit (pixels from the image cache or the intensity rule), the
samplers that fix each epoch's batches, and the loaders of a run (workers, the batch ring)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from txkit.data.cache import CacheSettings, open_images
from txkit.datasets.base import Split, TxDataset
from txkit.datasets.intensity import IntensityRule, load_input
from txkit.datasets.pixels import as_float
from txkit.data.batch_ring import BatchRing, Numbered, RingDataset, RingLoader, SlotRef, shared_tensor

CACHE_LIMIT_BYTES = 2 * 1024**3


class TensorSplit(Dataset):
    """Yields (1, S, S) float images and labels: uint8 pixels scaled by 1/255, float32 pixels as the rule gave them.

    In a DataLoader worker, a batch of uint8 pixels stays uint8 (a quarter of the bytes through shared memory and,
    pinned, to the GPU); :func:`txkit.training.runtime.to_input` scales it by 1/255 where the batch arrives, to the same
    values. Batches made in the main process are float32.

    Pixels come from the disk image cache (:mod:`txkit.data.cache`) when ``cache`` enables it and the split has
    source files, else from ``load_input`` (kept in the main process's memory when the split is small). ``indices``
    selects a subset (a `fraction`) while the disk cache covers the whole ``split``, so runs of every fraction
    share one cache. The tensors are the same either way.
    """

    def __init__(self, split: Split, size: int, task: str, rule: IntensityRule | None = None,
                 cache: CacheSettings | None = None, indices=None, label: str = ""):
        self.size, self.task, self.rule = size, task, rule or IntensityRule("auto")
        self.rows = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.split = split if self.rows is None else split.subset(self.rows)
        self.store = open_images(split, size, self.rule, cache, label)
        self.cache_status = self.store.status if self.store is not None else (
            "off" if cache is None or not cache.enabled else "memory")
        small = len(self.split) * size * size <= CACHE_LIMIT_BYTES
        self._memory: dict[int, np.ndarray] | None = {} if self.store is None and small else None
        self.targets = torch.as_tensor(self.split.labels, dtype=torch.float32 if task == "multilabel" else torch.long)

    def __len__(self) -> int:
        return len(self.split)

    def pixels(self, index: int) -> np.ndarray:
        if self.store is not None:
            return self.store.array[index if self.rows is None else self.rows[index]]
        # Memoised in the main process only: persistent workers would each hold a copy of the split.
        memory = self._memory if torch.utils.data.get_worker_info() is None else None
        image = memory.get(index) if memory is not None else None
        if image is None:
            image = load_input(self.split, index, self.size, self.rule)
            if memory is not None:
                memory[index] = image
        return image

    def __getitem__(self, index: int):
        return pixels_to_tensor(self.pixels(index)).unsqueeze(0), self.targets[index].clone()

    def __getitems__(self, indices: list[int]) -> "StackedBatch":
        """A whole batch at once (DataLoader's batched fetch): one read of the memmap, one conversion."""
        y = self._targets_of(indices)
        shape = (len(indices), 1, self.size, self.size)
        if self.store is not None:
            if self.store.array.dtype == np.uint8 and torch.utils.data.get_worker_info() is not None:
                x = _batch_tensor(shape, torch.uint8)
                self.read_into(indices, x.numpy()[:, 0])  # memmap -> shared memory, one copy
                return StackedBatch(x, y)
            x = _batch_tensor(shape)
            as_float(self.store.array[self._store_rows(indices)], x.numpy()[:, 0])
        else:
            x = _batch_tensor(shape)
            for k, index in enumerate(indices):
                as_float(self.pixels(index), x.numpy()[k, 0])
        return StackedBatch(x, y)

    @property
    def ring_dtype(self) -> torch.dtype | None:
        """The dtype a worker's batch ring holds (the disk cache's), or None: without a disk cache a worker
        decodes each image, and that, not the transfer, sets the pace."""
        if self.store is None:
            return None
        dtypes = {np.dtype(np.uint8): torch.uint8, np.dtype(np.float32): torch.float32}
        return dtypes.get(np.dtype(self.store.header["dtype"]))

    def read_into(self, indices, out: np.ndarray) -> None:
        """The cached pixels of ``indices`` into ``out`` (n, 1, S, S) or (n, S, S), in the cache's dtype."""
        np.take(self.store.array, self._store_rows(indices), axis=0, out=out[:, 0] if out.ndim == 4 else out)

    def labels_of(self, indices) -> np.ndarray:
        return self._targets_of(indices).numpy()

    def _targets_of(self, indices) -> torch.Tensor:
        return self.targets[torch.as_tensor(indices, dtype=torch.long)]

    def _store_rows(self, indices) -> np.ndarray:
        rows = np.asarray(indices, dtype=np.int64)
        return rows if self.rows is None else self.rows[rows]


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """One image's network input: uint8 scaled by 1/255 (float32), float32 kept (a copy either way)."""
    return torch.from_numpy(as_float(pixels, np.empty(pixels.shape, dtype=np.float32)))


def _batch_tensor(shape, dtype=torch.float32) -> torch.Tensor:
    # In a worker process, write the batch straight into shared memory (as default_collate does): no copy
    # when it is sent to the main process.
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    return shared_tensor(shape, dtype)


class StackedBatch(Sequence):
    """A batch already stacked; still a sequence of (x, y) samples for DataLoader's default collate."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, k):
        return self.x[k], self.y[k]


def collate(batch):
    from torch.utils.data import default_collate

    if isinstance(batch, SlotRef):
        return batch
    return [batch.x, batch.y] if isinstance(batch, StackedBatch) else default_collate(batch)


def worker_failure(exc: BaseException) -> str | None:
    """One line (naming the options that set a worker's memory) when ``exc`` is DataLoader's report of a worker
    process that died, else None. The kernel's out-of-memory killer sends SIGKILL ("is killed by signal:
    Killed"); a full /dev/shm, where workers hand over their batches, shows as a bus error."""
    text = str(exc)
    if not isinstance(exc, RuntimeError) or not text.startswith("DataLoader worker (pid"):
        return None
    signal = text.partition("killed by signal: ")[2].strip().rstrip(".")
    if signal == "Bus error":
        why = "was killed by a bus error, probably because shared memory (/dev/shm) is full"
    elif signal:
        why = f"was killed by signal {signal}, probably by the system's out-of-memory killer"
    else:
        why = "ended unexpectedly, probably killed by the system's out-of-memory killer"
    return f"a data loader worker process {why}; use fewer `num_workers` or a smaller `batch_size`"


def input_rule(cfg, dataset: TxDataset, fitted_on: Split | None = None) -> IntensityRule:
    """The run's intensity rule (`intensity`) with its statistics fitted on the training split (``fitted_on``:
    the training images of a fold instead)."""
    if fitted_on is None:
        fitted_on = dataset.splits["train"] if "train" in dataset.splits else next(iter(dataset.splits.values()))
    return IntensityRule.parse(cfg.intensity).fit(fitted_on)


def cache_settings(cfg) -> CacheSettings:
    return CacheSettings(enabled=cfg.image_cache, directory=cfg.cache_dir)


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


def loader_options(num_workers: int, device=None, persistent: bool = False) -> dict:
    """Pinned memory and deeper prefetching when a GPU trains; ``persistent`` keeps the workers of a loader that
    is iterated again (every epoch) alive instead of starting them anew."""
    cuda = _is_cuda(device)
    options = {"num_workers": num_workers, "pin_memory": cuda, "collate_fn": collate}
    if num_workers > 0:
        options.update(persistent_workers=persistent, prefetch_factor=4 if cuda else 2)
    return options


def make_loader(data: TensorSplit, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, sampler: Sampler | None = None, device=None) -> DataLoader:
    """A one-off loader. Training loaders (``shuffle``) use ShuffledBatches unless a batch ``sampler`` is given;
    evaluation keeps every image in order. A run uses :class:`Loaders` instead, whose workers live across epochs."""
    if shuffle:
        batches = sampler or ShuffledBatches(len(data), batch_size, seed, epoch)
        return DataLoader(data, batch_sampler=batches, **loader_options(num_workers, device))
    return DataLoader(data, batch_size=batch_size, shuffle=False, **loader_options(num_workers, device))


class EpochBatches(Sampler):
    """The batch sampler of a loader that lives across epochs: ``current`` (one epoch's batches) is set before
    each epoch, in the main process, where DataLoader reads its batch sampler. Batches are numbered across epochs
    (a worker's slot in a :class:`~txkit.data.batch_ring.BatchRing`)."""

    def __init__(self, current=None):
        self.current = current
        self._numbers = itertools.count()

    def __iter__(self):
        return (Numbered(batch, next(self._numbers)) for batch in self.current)

    def __len__(self) -> int:
        return len(self.current)


class Loaders:
    """The loaders of one run, each made once per TensorSplit: with workers they are persistent, so the worker
    processes (and their open memmaps) live across epochs. Batches stay those of ShuffledBatches(seed, epoch)
    (or the given sampler), and every epoch draws from torch's global generator as a fresh loader does, so runs,
    resumed runs and old seeds see the same batches and the same augmentation.

    Workers over a disk cache write their batches into a shared-memory ring (:mod:`txkit.data.batch_ring`).
    8-bit batches arrive float32 on the CPU and, with ``uint8_batches`` (the default on CUDA), stay uint8 for
    :func:`txkit.training.runtime.to_input` to scale on the device."""

    def __init__(self, batch_size: int, seed: int, num_workers: int, device=None, uint8_batches: bool | None = None):
        self.batch_size, self.seed, self.num_workers, self.device = batch_size, seed, num_workers, device
        self.uint8_batches = _is_cuda(device) if uint8_batches is None else uint8_batches
        self._made: dict[tuple, tuple[TensorSplit, DataLoader]] = {}

    def train(self, data: TensorSplit, epoch: int, sampler: Sampler | None = None) -> DataLoader:
        # train_batches joins a last batch of one image to the one before: batch_size + 1 at most
        loader = self._loader(("train", _identity(data)), data, self.batch_size + 1)
        loader.batch_sampler.current = sampler or ShuffledBatches(len(data), self.batch_size, self.seed, epoch)
        return loader

    def evaluation(self, data: TensorSplit, batch_size: int) -> DataLoader:
        return self._loader(("eval", _identity(data), batch_size), data, batch_size,
                            lambda: [list(range(i, min(i + batch_size, len(data))))
                                     for i in range(0, len(data), batch_size)])

    def _loader(self, key: tuple, data: TensorSplit, batch_len: int, batches=None) -> DataLoader:
        """The loader made for ``key``, or a new one; ``batches`` makes fixed batches (evaluation)."""
        made = self._made.get(key)
        if made is None:
            loader = self._make(data, batch_len, EpochBatches(batches and batches()))
            self._made[key] = (data, loader)  # holding data keeps its id unique while the loader lives
            return loader
        loader = made[1]
        if loader._iterator is not None:  # a persistent loader's next epoch draws no seed; draw it as a fresh one would
            torch.empty((), dtype=torch.int64).random_()
        return loader

    def close(self) -> None:
        """Stops the loaders' worker processes now: when the garbage collector frees a loader in a reference
        cycle, it has closed the queues DataLoader stops its workers through, and each worker costs a 5 s wait."""
        for _, loader in self._made.values():
            iterator, loader._iterator = getattr(loader, "_iterator", None), None
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
        self._made.clear()

    def _make(self, data, batch_len: int, sampler: EpochBatches) -> DataLoader:
        options = loader_options(self.num_workers, self.device, persistent=True)
        base = data.dataset if isinstance(data, Subset) else data
        dtype = getattr(base, "ring_dtype", None) if self.num_workers else None
        ring = None if dtype is None else BatchRing.fitting(options["prefetch_factor"] * self.num_workers + 1,
                                                            batch_len, (1, base.size, base.size), dtype)
        if ring is None:
            return DataLoader(data, batch_sampler=sampler, **options)
        # a module function, not a method: a loader that referred back to its Loaders would make a reference
        # cycle, and the cyclic collector closes the index queues before DataLoader can stop its workers with them
        copy_out = _copy_uint8 if self.uint8_batches else _copy_to_float
        return RingLoader(RingDataset(data, ring), copy_out, batch_sampler=sampler, **options)


def _copy_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """A batch out of its ring slot, 8-bit pixels kept (CPU; on CUDA the pin-memory thread copies it)."""
    return pixels.clone() if pixels.dtype == torch.uint8 else _copy_to_float(pixels)


def _copy_to_float(pixels: torch.Tensor) -> torch.Tensor:
    return pixels_to_tensor(pixels.numpy())


def _is_cuda(device) -> bool:
    return getattr(device, "type", device) == "cuda"


def _identity(data) -> tuple:
    """One loader per dataset object, and per (dataset, indices) for a Subset made anew each epoch (a shard)."""
    if isinstance(data, Subset):
        return ("subset", *_identity(data.dataset), tuple(data.indices))
    return (id(data),)
