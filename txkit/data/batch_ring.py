"""Worker batches through a ring of shared-memory slots: a batch costs the workers no file descriptor.

DataLoader sends each tensor a worker returns as a file descriptor through multiprocessing's resource sharer,
one authenticated connection per tensor: about 3.7 ms per batch on a 2-core machine, which held a cached 224-px
loader near 8,600 images/s however fast its workers read the memmap (``bench/bench_loader.py``). A
:class:`BatchRing` is allocated in shared memory before the workers start. A worker writes batch number ``n``
into slot ``n % slots`` and returns a :class:`SlotRef` (the number, the length, the labels by value); the main
process copies the batch out: into pinned memory in DataLoader's pin-memory thread on CUDA, to float32 in
:class:`RingLoader` on the CPU.

Why a slot is free when a worker writes it: DataLoader dispatches one batch each time it returns one, after
``prefetch_factor * num_workers`` at the start, so batch ``n + prefetch_factor * num_workers + 1`` is dispatched
only when batch ``n + 1`` is returned, after batch ``n`` was copied out. The ring has that many slots plus one.
A stamp per slot (-1 while a worker writes, then the batch number) checks it on every copy.
"""

from __future__ import annotations

import itertools
import shutil
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

_RINGS: weakref.WeakValueDictionary[int, BatchRing] = weakref.WeakValueDictionary()
_IDS = itertools.count()
SHM = "/dev/shm"


class Numbered(list):
    """One batch's indices and its number in its loader's sequence of batches (which names its slot)."""

    def __init__(self, indices, number: int):
        super().__init__(indices)
        self.number = number

    def __reduce__(self):
        return Numbered, (list(self), self.number)


@dataclass(frozen=True)
class SlotRef:
    """What a worker returns for a batch written into the ring."""

    ring: int
    number: int
    length: int
    labels: np.ndarray

    def pin_memory(self):
        """Called by DataLoader's pin-memory thread (main process, CUDA): the batch copied out, pinned."""
        return _RINGS[self.ring].take(self, _pinned_copy)


class BatchRing:
    def __init__(self, slots: int, batch_len: int, image_shape: tuple[int, ...], dtype: torch.dtype):
        self.pixels = shared_tensor((slots, batch_len, *image_shape), dtype)
        self.stamps = shared_tensor((slots,), torch.int64).fill_(-1)
        self.id = next(_IDS)
        _RINGS[self.id] = self

    @classmethod
    def fitting(cls, slots: int, batch_len: int, image_shape, dtype: torch.dtype) -> BatchRing | None:
        """A ring, or None when it would take more than half of the free shared memory (a container's small
        /dev/shm): then batches go through DataLoader's own transfer."""
        need = slots * batch_len * int(np.prod(image_shape)) * dtype.itemsize
        try:
            if need > shutil.disk_usage(SHM).free // 2:
                return None
        except OSError:
            pass  # no /dev/shm to measure (not Linux); torch still allocates shared memory
        try:
            return cls(slots, batch_len, tuple(image_shape), dtype)
        except RuntimeError:
            return None

    def slot(self, number: int) -> int:
        return number % len(self.stamps)

    def write(self, batch: Numbered, fill: Callable[[np.ndarray], None], labels: np.ndarray) -> SlotRef | None:
        """In a worker: ``fill`` writes the batch's pixels into its slot; None if the batch is longer than a slot."""
        if len(batch) > self.pixels.shape[1]:
            return None
        slot = self.slot(batch.number)
        self.stamps[slot] = -1
        fill(self.pixels[slot, :len(batch)].numpy())
        self.stamps[slot] = batch.number
        return SlotRef(self.id, batch.number, len(batch), labels)

    def take(self, ref: SlotRef, copy: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        """In the main process: [pixels, labels] of ``ref``'s batch, ``copy`` making the pixels its own."""
        slot = self.slot(ref.number)
        self._check(slot, ref)
        x = copy(self.pixels[slot, :ref.length])
        self._check(slot, ref)
        return [x, torch.from_numpy(ref.labels)]

    def _check(self, slot: int, ref: SlotRef) -> None:
        if int(self.stamps[slot]) != ref.number:
            raise RuntimeError(f"txkit internal error: loader slot {slot} holds batch {int(self.stamps[slot])}, "
                               f"expected batch {ref.number}; train with --num-workers 0 and report this")


class RingDataset(Dataset):
    """``data`` (a TensorSplit, or a Subset of one) as a worker sees it: each batch written into ``ring``."""

    def __init__(self, data, ring: BatchRing):
        self.data, self.ring = data, ring
        self.base, self.indices = (data.dataset, data.indices) if isinstance(data, Subset) else (data, None)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.data[index]

    def __getitems__(self, batch: Numbered):
        rows = list(batch) if self.indices is None else [self.indices[i] for i in batch]
        ref = self.ring.write(batch, lambda out: self.base.read_into(rows, out), self.base.labels_of(rows))
        return ref if ref is not None else self.base.__getitems__(rows)


class RingLoader(DataLoader):
    """A DataLoader over a :class:`RingDataset` whose batches are copied out of the ring by ``copy_out`` before
    they are returned (on CUDA the pin-memory thread has already copied them into pinned memory)."""

    def __init__(self, data: RingDataset, copy_out: Callable[[torch.Tensor], torch.Tensor], **options):
        super().__init__(data, **options)
        self.ring, self.copy_out = data.ring, copy_out

    def __iter__(self):
        return self._copied(super().__iter__())  # not a generator itself: DataLoader draws its seed here

    def _copied(self, batches):
        for batch in batches:
            yield self.ring.take(batch, self.copy_out) if isinstance(batch, SlotRef) else batch


def _pinned_copy(view: torch.Tensor) -> torch.Tensor:
    return torch.empty(view.shape, dtype=view.dtype, pin_memory=True).copy_(view)


def shared_tensor(shape, dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory (as DataLoader's workers make their batches)."""
    elem = torch.empty(0, dtype=dtype)
    return elem.new(elem._typed_storage()._new_shared(int(np.prod(shape)))).resize_(*shape)
