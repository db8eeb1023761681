"""What DistributedDataParallel changes in a run, in one place: the checks and module changes made before the
network is placed (SyncBatchNorm, batch-wide dropout), this process's share of every global batch, the
DDP-wrapped model, and evaluation splits cut into parts whose predictions are gathered. In one process every
function here is a no-op. The process group itself is :mod:`txkit.training.distributed`."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from txkit.errors import TxkitError
from txkit.training.distributed import active, is_main, rank, world_size
from txkit.training.runtime import CompiledNet

_models: dict[int, tuple[tuple, nn.Module, object]] = {}


def model(net: nn.Module, compile: bool = False):
    """``net`` wrapped in DistributedDataParallel (then torch.compile'd with `compile`); wrapped again when its
    trainable parameters change (phases, gradual unfreezing): DDP fixes the parameters it averages when built."""
    if not active():
        return net
    key = tuple(p.requires_grad for p in net.parameters())
    cached = _models.get(id(net))
    if cached is not None and cached[0] == key and cached[1].module is net:
        return cached[2]
    _models.pop(id(net), None)
    device = next(net.parameters()).device
    # DDP's constructor draws from the global generator; the run's random stream must not notice it
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    wrapped = CompiledNet(ddp) if compile else ddp
    _models[id(net)] = (key, ddp, wrapped)
    return wrapped


def adapt(net: nn.Module, cfg, device: torch.device) -> nn.Module:
    """``net`` as this run trains it under torchrun (unchanged in one process): SyncBatchNorm with
    `sync_batchnorm`, and dropout whose mask is drawn for the whole global batch (:class:`GlobalDropout`).
    Made before the network is placed, so the runtime compiles and wraps the modules that train."""
    if not active():
        return net
    if cfg.sync_batchnorm:
        if device.type != "cuda":
            raise TxkitError("`sync_batchnorm` needs CUDA (PyTorch's SyncBatchNorm is GPU-only); leave it off on "
                             "CPU, where each process normalises with its own shard's batch statistics")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, GlobalDropout(child.p))
    return net


def check(cfg, train_images: int) -> None:
    """Under torchrun, a run whose global batch or training split is smaller than the processes is refused."""
    if not active():
        return
    W = world_size()
    if cfg.batch_size < W:
        raise TxkitError(f"`batch_size` {cfg.batch_size} is smaller than the {W} processes; `batch_size` is the "
                         f"global batch, split across the processes: use {W} or more")
    if train_images < W:
        raise TxkitError(f"the training split has {train_images} image(s), fewer than the {W} "
                         f"processes; use fewer processes or a larger `fraction`")


def writes_run_files() -> bool:
    """Only process 0 writes the run directory and its logs."""
    return is_main()


def sync_buffers(net: nn.Module) -> None:
    """Process 0's buffers (batch-norm running statistics) on every process, so all evaluate one model:
    the one process 0 saves."""
    if active():
        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)


class _Step:
    size: int | None = None  # images in the current global batch (None: no sharded step running)
    rows: slice = slice(None)


_STEP = _Step()


class GlobalDropout(nn.Dropout):
    """nn.Dropout whose mask is this process's rows of one mask drawn for the whole global batch, exactly as
    one process draws it (CPU: bernoulli on a tensor of the batch's shape; CUDA: the fused kernel's mask)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or _STEP.size is None:
            return super().forward(x)
        if self.p == 1:
            return x * 0
        shape = (_STEP.size,) + tuple(x.shape[1:])
        if x.device.type == "cpu":
            noise = torch.empty(shape, dtype=x.dtype).bernoulli_(1 - self.p).div_(1 - self.p)
            return x * noise[_STEP.rows]
        mask = torch.native_dropout(torch.ones(shape, dtype=x.dtype, device=x.device), self.p, True)[1]
        return x * mask[_STEP.rows].to(x.dtype) * (1 / (1 - self.p))


# --- data ---------------------------------------------------------------------------------------------
class ShardedSteps:
    """This process's share of each global batch of one epoch, with the loss weighting and the flips that
    keep the step equal to one process's step over the whole batch."""

    def __init__(self, trainer, loader):
        """``loader``: the run's training loader of this epoch, whose EpochBatches hold the global batches."""
        W, r = world_size(), rank()
        self.batches = [list(b) for b in loader.batch_sampler]
        self.shards = [b[r::W] for b in self.batches]
        self.rows = slice(r, None, W)
        self.labels = np.asarray(trainer.train_data.split.labels)
        self.weight = getattr(trainer.loss_fn, "weight", None)
        self.masked = hasattr(trainer.loss_fn, "pos_weight")  # MaskedBCE: mean over known labels
        self.task, self.loss_fn = trainer.task, trainer.loss_fn
        # the run's persistent loader (data.Loaders) now loads this process's shards; its workers live on
        loader.batch_sampler.current, self.loader = [s for s in self.shards if s], loader
        self.model = model(trainer.net, trainer.cfg.compile)
        self.total, self.batch, self.shard = 0.0, [], []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        loaded, last = iter(self.loader), None
        try:
            for self.batch, self.shard in zip(self.batches, self.shards):
                _STEP.size, _STEP.rows = len(self.batch), self.rows
                if self.shard:
                    last = next(loaded)
                    yield last
                else:  # a last batch with fewer images than processes
                    yield last[0][:0], last[1][:0]
        finally:
            _STEP.size = None

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        flip = (torch.rand(len(self.batch), device=x.device) < 0.5)[self.rows]
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def _mass(self, indices: list[int]) -> float:
        labels = self.labels[indices]
        if self.masked:
            return float(max(1, (~np.isnan(labels)).sum()))
        if self.weight is not None:
            return float(self.weight.detach().cpu().double()[torch.as_tensor(labels, dtype=torch.long)].sum())
        return float(len(indices))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """W x this shard's part of the batch's mean loss: DDP's average of it is the batch's mean loss."""
        if len(y) == 0:
            part = logits.sum() * 0.0
        else:
            part = self.loss_fn(logits, y) * (self._mass(self.shard) / self._mass(self.batch))
        self.total += part.item() * len(self.batch)
        return part * world_size()

    def epoch_result(self, correct: int) -> tuple[float, float]:
        """The epoch's mean training loss and accuracy over every process's images."""
        sums = torch.tensor([self.total, float(correct)], dtype=torch.float64)
        dist.all_reduce(sums)
        n = sum(len(b) for b in self.batches)
        return float(sums[0]) / n, (float(sums[1]) / n if self.task == "multiclass" else float("nan"))


_shards: dict[int, tuple[object, object]] = {}


def shard(data):
    """This process's contiguous part of an evaluation split (the whole split in one process); the same
    object for the same split, so the run's persistent loader for it is made once."""
    if not active():
        return data
    from torch.utils.data import Subset

    made = _shards.get(id(data))
    if made is None or made[0] is not data:
        part = np.array_split(np.arange(len(data)), world_size())[rank()]
        made = _shards[id(data)] = (data, Subset(data, part.tolist()))
    return made[1]


def gather_predictions(logits: list[torch.Tensor], labels: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated predictions of the whole split, in its order (every process gets all of them)."""
    if not active():
        return torch.cat(logits).numpy(), torch.cat(labels).numpy()
    local = (torch.cat(logits).numpy(), torch.cat(labels).numpy()) if logits else None
    parts = [None] * world_size()
    dist.all_gather_object(parts, local)
    parts = [p for p in parts if p is not None]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
