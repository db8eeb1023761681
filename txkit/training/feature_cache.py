"""The frozen-prefix feature cache: when a phase trains only the stages above a frozen prefix, the prefix's
outputs are computed once (eval mode, as frozen batch-norm already is) and the trainable suffix trains on them.

How the network is cut: one traced forward finds the boundary module (the first module of a trainable stage
to run) and the modules that run before it. ``NetSplit.prefix`` stops the forward at the boundary and returns
its input; ``NetSplit.suffix`` runs the network with those earlier modules short-circuited (they return zeros
of their traced shape, which only reach the boundary, whose input is replaced by the cached features).
Before a split is trusted, a probe batch checks that the split network gives the same logits as the whole
one, in eval mode and in train mode with the same random seed (so a prefix with active dropout, a batch-norm
that still learns statistics or a skip connection around the boundary means: no cache, with the reason).

The random stream is the uncached path's: batches come from the same batch samplers, and each batch's flip
draw is ``torch.rand(n, device)`` as in ``engine.horizontal_flip``; both orientations are cached.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from txkit import storage
from txkit.errors import TxkitError
from txkit.training.netsplit import NetSplit, trace_split, verify_split

RAM_LIMIT_BYTES = 2 * 1024**3  # and at most RAM_FRACTION of the available memory; beyond: a memory-mapped file
RAM_FRACTION = 0.25
PROBE_IMAGES = 4
# Free space a spill leaves in the run directory, in copies of the network's state: a checkpoint holds the
# weights and up to two optimizer moments (3), the next one is written beside it (6), and the best weights
# beside theirs (8).
CHECKPOINT_COPIES = 8
__all__ = ["FeatureCache", "FeatureStore", "NetSplit", "SpillError", "distributed", "trace_split", "verify_split"]
ESTIMATE = "measured prefix forward time per image x prefix forwards the cache avoided, minus extra ones it made"


def distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return True
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _state_bytes(net) -> int:
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def ram_budget() -> int:
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None and hasattr(os, "sysconf"):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pass
    return int(min(RAM_LIMIT_BYTES, RAM_FRACTION * available)) if available else RAM_LIMIT_BYTES


class SpillError(TxkitError):
    """A feature cache too large for memory whose folder cannot hold its memory-mapped file."""


class FeatureStore:
    """``rows`` feature tensors in RAM, or in a memory-mapped temporary file when they exceed ``budget``.

    The file gets all its disk blocks before it is mapped (:func:`txkit.storage.reserve`): a memory map that
    writes to a full disk is not an error but a SIGBUS that kills the process without a word. A folder with
    less than ``nbytes + keep_free`` free (``keep_free``: what the run's checkpoints still need) or a
    reservation the disk refuses is a :class:`SpillError`, and no file is left."""

    def __init__(self, rows: int, shape: tuple[int, ...], dtype: torch.dtype, budget: int, folder: Path,
                 keep_free: int = 0):
        dtype = dtype if dtype in (torch.float32, torch.float16) else torch.float32
        self.nbytes = rows * int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        self.path = self._map = None
        if self.nbytes <= budget:
            self.values = torch.empty((rows, *shape), dtype=dtype)
        else:
            np_dtype = np.float16 if dtype == torch.float16 else np.float32
            self._map = self._spill(Path(folder), np_dtype, (rows, *shape), keep_free)
            self.values = torch.from_numpy(self._map)
        self.filled = torch.zeros(rows, dtype=torch.bool)

    def _spill(self, folder: Path, np_dtype, shape: tuple[int, ...], keep_free: int) -> np.memmap:
        free = storage.free_bytes(folder)
        if free is not None and free < self.nbytes + keep_free:
            raise self._no_room(folder, keep_free, "not enough free space")
        try:
            fd, name = tempfile.mkstemp(prefix=".feature-cache-", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise self._no_room(folder, keep_free, exc.strerror or str(exc)) from None
        self.path = Path(name)
        try:
            try:
                storage.reserve(fd, self.nbytes)
            finally:
                os.close(fd)
            return np.memmap(self.path, dtype=np_dtype, mode="r+", shape=shape)  # r+: keeps the reserved blocks
        except OSError as exc:
            self.close()
            raise self._no_room(folder, keep_free, exc.strerror or str(exc)) from None

    def _no_room(self, folder: Path, keep_free: int, reason: str) -> SpillError:
        kept = f" (and {storage.human_bytes(keep_free)} kept for checkpoints)" if keep_free else ""
        free = storage.free_bytes(folder)
        room = f", {storage.human_bytes(free)} is free" if free is not None else ""
        return SpillError(f"{folder}: cannot hold the feature cache's memory-mapped file ({reason}: it needs "
                          f"{storage.human_bytes(self.nbytes)}{kept}{room})")

    def put(self, rows: torch.Tensor, features: torch.Tensor) -> None:
        self.values[rows] = features.detach().to("cpu", self.values.dtype).contiguous()
        self.filled[rows] = True

    def close(self) -> None:
        self.values = self._map = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class FeatureCache:
    """The engine's hook: ``prepare`` at each epoch start, then ``train_batches``/``forward``/``predict``."""

    def __init__(self, *, net, strategy, state, runtime, train_data, val_data, task: str, batch_size: int,
                 seed: int, augment: bool, enabled: bool = True, run_dir: Path | None = None):
        """Collaborators, named: the network and the strategy whose frozen prefix is cached, the loop's ``state``
        (phase, trainable stages, unfreezing), the :class:`~txkit.training.runtime.Runtime` it computes on, the
        training and validation :class:`~txkit.data.loader.TensorSplit`, and the run directory a large cache
        spills into (the system's temp folder without one)."""
        self.net, self.strategy, self.state, self.runtime = net, strategy, state, runtime
        self.train_data, self.val_data, self.task = train_data, val_data, task
        self.batch_size, self.seed, self.augment, self.run_dir = batch_size, seed, augment, run_dir
        self.off = None
        if not enabled:
            self.off = "turned off (`feature_cache` false)"
        elif distributed():
            self.off = "off under torchrun/DDP (each process trains on its own shard)"
        self.active, self.key, self.split = False, None, None
        self.train = self.val = None
        self.segments: list[dict] = []

    def spill_to(self, run_dir: Path | None, warn: Callable[[str], None] | None = None) -> None:
        """The run directory a cache too large for memory spills into (known once the run directory exists),
        and where a warning goes (a phase that has no room to spill trains without the cache)."""
        self.run_dir = Path(run_dir) if run_dir else None
        if warn is not None:
            self.warn = warn

    @staticmethod
    def warn(text: str) -> None:
        warnings.warn(text, stacklevel=2)

    # --- phases ---------------------------------------------------------------------------------------
    def prepare(self, epoch: int) -> bool:
        """Use the cache this epoch? (Re)builds it when the phase or its trainable stages changed."""
        self.active = False
        if self.off:
            return False
        key = (self.state.phase, tuple(self.state.trainable))
        if key != self.key:
            self.release()
            self.key = key
            self._start_segment()
        segment = self.segments[-1]
        segment["epochs"].append(epoch + 1)
        if self.split is None:
            return False
        if not self._boundary_may_move():
            self._fill_train(torch.nonzero(~self.train.filled).flatten())
        self.active = True
        return True

    def _boundary_may_move(self) -> bool:
        return self.strategy.unfreeze_while_improving and self.state.unfreezing

    def _start_segment(self) -> None:
        stages = self.net.stage_names()
        trainable = [s for s in stages if s in set(self.state.trainable)]
        segment = {"phase": self.strategy.phases[self.state.phase].name, "epochs": [], "used": False,
                   "trainable": trainable}
        self.segments.append(segment)
        reason = self._applies(stages, trainable)
        split = reason or self._split(trainable)
        if isinstance(split, str):
            segment["reason"] = split
            return
        self.split = split
        try:
            self._allocate(segment)
        except SpillError as exc:  # the cache only saves time: this phase trains on images, as with it off
            self.release()
            segment["reason"] = f"no room on disk ({exc})"
            self.warn(f"{exc}; the {segment['phase']!r} phase trains without the feature cache (slower, the same "
                      f"results up to float rounding); free space there to use it")
            return
        first = stages.index(trainable[0])
        segment.update(used=True, prefix=stages[:first], boundary=split.boundary, prefix_forwards=0,
                       served=0, prefix_s=0.0)
        started = time.perf_counter()
        self._fill_val()
        segment["build_s"] = round(time.perf_counter() - started, 3)

    def _applies(self, stages: list[str], trainable: list[str]) -> str | None:
        if not trainable:
            return "nothing trains"
        if trainable[0] == stages[0]:
            return "the first stage trains, so nothing in front is frozen"
        return None

    def _split(self, trainable: list[str]) -> NetSplit | str:
        paths = [p for name, ps in self.net.stages() if name in trainable for p in ps]
        x = torch.stack([self.train_data[i][0] for i in range(min(PROBE_IMAGES, len(self.train_data)))])
        x = self._to_device(x)
        if len(x) < 2:
            return "too few training images to check the split"
        was_training = self.net.training
        try:
            self.net.eval()
            with self._amp():
                split = trace_split(self.net, x, paths)
        except Exception as exc:
            return f"the network cannot be traced ({type(exc).__name__})"
        finally:
            self.net.train(was_training)
        if isinstance(split, str):
            return split
        return verify_split(split, x, self._amp, 2e-2 if self.runtime.amp else 1e-4) or split

    def _allocate(self, segment: dict) -> None:
        shape, dtype = tuple(self.split.probe_features.shape[1:]), self.split.probe_features.dtype
        folder = Path(self.run_dir) if self.run_dir else Path(tempfile.gettempdir())
        if self.run_dir:  # one a killed process left in this run directory (never read)
            for stale in folder.glob(".feature-cache-*.tmp"):
                stale.unlink(missing_ok=True)
        budget = ram_budget()
        # a spill in the run directory must not take the room its next checkpoints are written into
        keep_free = CHECKPOINT_COPIES * _state_bytes(self.net) if self.run_dir else 0
        self.orientations = 2 if self.augment else 1
        self.train = FeatureStore(self.orientations * len(self.train_data), shape, dtype, budget, folder, keep_free)
        # evaluation runs without autocast: float32 features
        self.val = FeatureStore(len(self.val_data), shape, torch.float32, budget - self.train.nbytes, folder,
                                keep_free)
        segment.update(shape=list(shape), orientations=self.orientations,
                       megabytes=round((self.train.nbytes + self.val.nbytes) / 2**20, 1),
                       storage="memmap" if self.train.path or self.val.path else "ram")

    def release(self) -> None:
        for store in (self.train, self.val):
            if store is not None:
                store.close()
        self.train = self.val = self.split = None
        self.active = False

    def close(self) -> None:
        self.release()
        self.key = None

    # --- computing features ---------------------------------------------------------------------------
    def _amp(self):
        return self.runtime.autocast()

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        return self.runtime.to_input(x)

    def _prefix(self, x: torch.Tensor) -> torch.Tensor:
        return self.split.prefix(x)

    def _compute(self, data, indices: list[int], flips: list[list[bool]], store: FeatureStore, rows, amp: bool,
                 workers: int = 0):
        """Prefix features of ``data[indices]`` for each orientation ``o`` where ``flips[o]`` is true, into
        ``rows[o]`` (both aligned with ``indices``)."""
        segment = self.segments[-1]
        was_training = self.net.training
        self.net.eval()
        from txkit.data.loader import collate  # TensorSplit's batched fetch

        loader = DataLoader(Subset(data, indices), batch_size=2 * self.batch_size, num_workers=workers,
                            collate_fn=collate)
        devices = [self.runtime.device] if self.runtime.device.type == "cuda" else []
        done = 0
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                for x, _ in loader:
                    x = self._to_device(x)
                    batch = slice(done, done + len(x))
                    done += len(x)
                    for o in range(len(flips)):
                        wanted = torch.as_tensor(flips[o][batch])
                        if not wanted.any():
                            continue
                        started = time.perf_counter()
                        with self.runtime.autocast(amp):
                            features = self._prefix((x.flip(-1) if o else x)[wanted.to(x.device)])
                        store.put(rows[o][batch][wanted], features)  # the copy to the CPU synchronises
                        segment["prefix_s"] += time.perf_counter() - started
                        segment["prefix_forwards"] += int(wanted.sum())
        finally:
            self.net.train(was_training)

    def _fill_train(self, rows: torch.Tensor) -> None:
        """Compute the missing train rows (row = orientation * n + index)."""
        if not len(rows):
            return
        n = len(self.train_data)
        indices = torch.unique(rows % n)
        per_orientation = [indices + o * n for o in range(self.orientations)]
        wanted = [(~self.train.filled[r]).tolist() for r in per_orientation]
        self._compute(self.train_data, indices.tolist(), wanted, self.train, per_orientation, self.runtime.amp,
                      self.runtime.workers)

    def _fill_val(self) -> None:
        n = len(self.val_data)
        # evaluation runs without autocast, so its features are computed without it too
        self._compute(self.val_data, list(range(n)), [[True] * n], self.val, [torch.arange(n)], False,
                      self.runtime.workers)

    # --- serving --------------------------------------------------------------------------------------
    def _labels(self, data, indices) -> torch.Tensor:
        dtype = torch.float32 if self.task == "multilabel" else torch.long
        return torch.as_tensor(np.asarray(data.split.labels)[np.asarray(indices)], dtype=dtype)

    def train_batches(self, epoch: int, sampler=None):
        """(features, labels) for the epoch's batches (``sampler``'s, else ShuffledBatches(seed, epoch)), each
        in the orientation the uncached path's flip draw gives it. The index batches come through a DataLoader
        so that torch's global generator is drawn from as the image loader draws from it."""
        from txkit.data.loader import ShuffledBatches
        n = len(self.train_data)
        batches = sampler or ShuffledBatches(n, self.batch_size, self.seed, epoch)
        for idx in DataLoader(range(n), batch_sampler=batches):
            batch = idx.tolist()
            if self.augment:
                flip = torch.rand(len(idx), device=self.runtime.device) < 0.5  # as engine.horizontal_flip draws
                rows = idx + n * flip.cpu().long()
            else:
                rows = idx
            missing = rows[~self.train.filled[rows]]
            self._fill_train_rows(missing)
            self.segments[-1]["served"] += len(rows)
            yield self._to_device(self.train.values[rows]), self._labels(self.train_data, batch)

    def _fill_train_rows(self, rows: torch.Tensor) -> None:
        if not len(rows):
            return
        n = len(self.train_data)
        rows = torch.unique(rows)
        indices = (rows % n).tolist()
        orientation = (rows // n).tolist()
        flips = [[o == k for o in orientation] for k in range(self.orientations)]
        self._compute(self.train_data, indices, flips, self.train, [rows] * self.orientations, self.runtime.amp)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.split.suffix(features)

    def serves(self, data) -> bool:
        return self.active and data is self.val_data

    @torch.no_grad()
    def predict(self, data) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        n, size = len(data), 2 * self.batch_size
        logits = [self.split.suffix(self._to_device(self.val.values[i:i + size])).float().cpu()
                  for i in range(0, n, size)]
        self.segments[-1]["served"] += n
        return torch.cat(logits).numpy(), self._labels(data, list(range(n))).numpy()

    # --- summary --------------------------------------------------------------------------------------
    def summary(self) -> dict:
        phases = []
        for segment in self.segments:
            out = dict(segment)
            if out["used"]:
                forwards, served = out["prefix_forwards"], out["served"]
                per = out["prefix_s"] / forwards if forwards else 0.0
                out["prefix_s"] = round(out["prefix_s"], 3)
                out["seconds_per_forward"] = round(per, 6)
                out["saved_s"] = round((served - forwards) * per, 2)
            phases.append(out)
        return {"enabled": self.off is None, "note": self.off, "used": any(p["used"] for p in phases),
                "saved_s": round(sum(p.get("saved_s", 0.0) for p in phases), 2), "estimate": ESTIMATE,
                "phases": phases}
