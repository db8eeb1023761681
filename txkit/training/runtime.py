"""Where and how a network runs, decided once: the device (this process's GPU under torchrun), mixed precision,
the memory format, ``torch.compile``, and the loader workers.

The training loop, evaluation, calibration, prediction and experiment reports all run through a
:class:`Runtime`, so a run trains and is evaluated on the same device with the same rules. What
DistributedDataParallel changes is :mod:`txkit.training.ddp`; the process group is
:mod:`txkit.training.distributed`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from txkit.data.loader import Loaders
from txkit.errors import TxkitError
from txkit.storage import first_line
from txkit.training import distributed


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cuda`` without a GPU is one line naming `device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TxkitError("`device` cuda: no CUDA device is available; use `device` cpu or auto")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise TxkitError(f"`device` must be auto, cpu or cuda (or cuda:N), got {name!r}") from None


def resolve_workers(value: int | str, device: torch.device) -> int:
    """``num_workers`` auto: 0 on CPU (workers compete with the model for the same cores), one per core up to 8
    when a GPU trains; under torchrun the node's cores are shared by its processes."""
    if value != "auto":
        return int(value)
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 1) // distributed.local_world_size()))


def out_of_memory(exc: BaseException) -> str | None:
    """What ran out when ``exc`` is an allocation failure (numpy's MemoryError, torch's CPU allocator, the GPU),
    else None; the fix is the caller's (it knows the options that set the sizes)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return f"the GPU ran out of memory ({first_line(exc)})"
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and CPU_ALLOCATOR_FAILED in str(exc)):
        return f"out of memory ({type(exc).__name__}: {first_line(exc)})"
    return None


CPU_ALLOCATOR_FAILED = "can't allocate memory"  # torch's DefaultCPUAllocator raises RuntimeError, not MemoryError


def to_input(x: torch.Tensor, device: torch.device, memory_format=torch.contiguous_format) -> torch.Tensor:
    """A batch on ``device``; image batches (4-d) in the network's memory format (channels_last on CUDA).

    The device twin of :func:`txkit.datasets.pixels.as_float`: a uint8 batch (from a loader's workers) moves as
    uint8 and is scaled by 1/255 on ``device``, to the same float32 values (true division, also on CUDA, where a
    Python-number divisor would become a multiplication by its reciprocal)."""
    moved = x.to(device, memory_format=memory_format) if x.dim() == 4 else x.to(device)
    if moved.dtype != torch.uint8:
        return moved
    return moved.to(torch.float32).div_(torch.full((), 255.0, dtype=torch.float32, device=moved.device))


@dataclass
class Runtime:
    """``device``; ``amp`` (autocast + GradScaler, CUDA only); ``channels_last`` (for conv nets on CUDA);
    ``compile`` (torch.compile); ``workers`` (loader worker processes). ``memory_format`` is set by
    :meth:`place` from the network it places."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    memory_format: torch.memory_format = torch.contiguous_format

    @classmethod
    def create(cls, device: str = "auto", *, amp: bool = True, channels_last: bool = True, compile: bool = False,
               num_workers: int | str = "auto") -> "Runtime":
        placed = distributed.local_device(resolve_device(device))  # cuda: LOCAL_RANK under torchrun
        return cls(placed, amp=amp and placed.type == "cuda", channels_last=channels_last, compile=compile,
                   workers=resolve_workers(num_workers, placed))

    @classmethod
    def for_training(cls, cfg) -> "Runtime":
        """The runtime a config asks for (`device`, `amp`, `channels_last`, `compile`, `num_workers`)."""
        return cls.create(cfg.device, amp=cfg.amp, channels_last=cfg.channels_last, compile=cfg.compile,
                          num_workers=cfg.num_workers)

    @classmethod
    def for_inference(cls, device: str = "auto", num_workers: int | str = "auto") -> "Runtime":
        """Evaluation, calibration, prediction, reports: the GPU when there is one, with workers there; float32
        (as a run's own validation is), no compile."""
        return cls.create(device, amp=False, num_workers=num_workers)

    def place(self, net: nn.Module):
        """Move ``net`` to the device (channels_last for conv nets on CUDA with ``channels_last``) and return the
        callable that runs it: ``net`` itself or its torch.compile'd form."""
        conv = any(isinstance(m, nn.Conv2d) for m in net.modules())
        cuda = self.device.type == "cuda"
        self.memory_format = torch.channels_last if self.channels_last and cuda and conv else torch.contiguous_format
        net.to(self.device, memory_format=self.memory_format)
        return CompiledNet(net) if self.compile else net

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        return to_input(x, self.device, self.memory_format)

    def autocast(self, enabled: bool | None = None):
        """Mixed precision where ``amp`` is on (``enabled`` overrides: evaluation runs in float32)."""
        on = self.amp if enabled is None else enabled
        return torch.autocast(self.device.type, enabled=on) if on else contextlib.nullcontext()

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.amp)  # a pass-through without AMP

    def loaders(self, batch_size: int, seed: int) -> Loaders:
        """The loaders of one run or one evaluation, with this runtime's workers and pinned memory on CUDA."""
        return Loaders(batch_size, seed, self.workers, self.device)

    @property
    def describe(self) -> str:
        parts = [str(self.device)] + [name for name, on in (("amp", self.amp), ("compile", self.compile)) if on]
        if self.memory_format == torch.channels_last:
            parts.append("channels_last")
        return ", ".join(parts) + f", {self.workers} loader worker(s)"


class CompiledNet:
    """``torch.compile(net)``; compiling happens at the first call, so a failure then is one line too."""

    def __init__(self, net: nn.Module):
        try:
            self.compiled = torch.compile(net)
        except Exception as exc:  # e.g. no dynamo support for this Python or platform
            raise TxkitError(_compile_failed(exc)) from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch._dynamo.exc

        try:
            return self.compiled(x)
        except torch._dynamo.exc.TorchDynamoException as exc:
            raise TxkitError(_compile_failed(exc)) from None


def _compile_failed(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__
    return f"`compile`: torch.compile failed on this model ({detail}); train without `compile`"
