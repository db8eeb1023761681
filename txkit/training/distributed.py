"""One run on several processes: torchrun starts them, DistributedDataParallel averages the gradients.

``torchrun --nproc_per_node=N -m txkit train ...`` trains ONE run (docs/scaling.md). The rules:

- ``batch_size`` is the GLOBAL batch. Every epoch's batches are those of one process (ShuffledBatches or
  BalancedBatches of (seed, epoch)); process ``r`` of ``W`` takes images ``r, r+W, r+2W, ...`` of each batch.
  The loss of a shard is weighted by its share of the batch's loss denominator (images, class weights or
  known labels), so the averaged gradient is the gradient of the whole batch's mean loss, also for a short
  last batch; a process whose share of that batch is empty runs an empty forward. The learning rate
  therefore means what it means in one process with the same ``batch_size``.
- Horizontal flips and ``nn.Dropout`` masks are drawn for the whole batch from the same seeded generator on
  every process (``GlobalDropout``), so a network without batch-norm follows one process's run up to the
  order of float reductions.
- Batch-norm normalises with each process's shard (per-replica statistics); running statistics are those
  of process 0 (DDP broadcasts them every step, and before each evaluation). ``sync_batchnorm`` on CUDA uses
  SyncBatchNorm instead (PyTorch has it for GPUs only).
- Validation and test sets are cut into W contiguous parts whose predictions are gathered in order, so
  every process computes the same metrics as one process would, and takes the same decisions.
- Only process 0 writes the run directory and prints. An error every process meets (a bad option, a damaged
  run) is one line from process 0; an error one process meets alone is one line from it, and the process
  exits at once so that torchrun stops the others (no process waits forever on a collective).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from txkit.errors import TxkitError

TIMEOUT_ENV = "TXKIT_DIST_TIMEOUT"  # seconds a collective may wait for a slow process (default 30 min)


@dataclass
class Context:
    rank: int
    world: int
    local_rank: int
    local_world: int
    backend: str | None = None  # the one that averages gradients: gloo (CPU) or nccl (CUDA)


_ctx: Context | None = None
_counter = 0  # names of the store keys main_first publishes


class Agreed(TxkitError):
    """An error that stops every process; ``origin`` met it first, process 0 reports it."""

    def __init__(self, message: str, exit_code: int = 1, origin: int = 0):
        super().__init__(message)
        self.exit_code, self.origin = exit_code, origin


# --- the process group ---------------------------------------------------------------------------------
def launched() -> bool:
    """Started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return _ctx is not None


def rank() -> int:
    return _ctx.rank if _ctx else 0


def world_size() -> int:
    return _ctx.world if _ctx else 1


def is_main() -> bool:
    return rank() == 0


def ensure_init() -> None:
    """Join the process group torchrun describes in the environment (no-op in one process)."""
    global _ctx
    if _ctx is not None or not launched():
        return
    env = {k: int(os.environ.get(k, "0")) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"]))
    cuda = torch.cuda.is_available()
    if cuda and env["LOCAL_RANK"] < torch.cuda.device_count():
        torch.cuda.set_device(env["LOCAL_RANK"])
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "1800")))
    # Objects and barriers go through gloo (CPU); CUDA tensors through nccl.
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timeout)
    _ctx = Context(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], local_world)


def shutdown() -> None:
    global _ctx
    if _ctx is not None and dist.is_initialized():
        dist.destroy_process_group()
    _ctx = None


def local_world_size() -> int:
    """Processes of this run on this node (1 in one process)."""
    return _ctx.local_world if _ctx else 1


def local_device(device: torch.device) -> torch.device:
    """``cuda`` means this process's GPU, ``LOCAL_RANK``; records the backend that averages gradients."""
    if not active():
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if _ctx.local_rank >= count:
            raise TxkitError(f"`device` cuda: this is process {_ctx.local_rank} of a node that has {count} "
                             f"GPU(s) visible; start torchrun with --nproc_per_node {count} or fewer")
        device = torch.device("cuda", _ctx.local_rank)
    _ctx.backend = "nccl" if device.type == "cuda" else "gloo"
    return device


def record() -> dict:
    """What config.json says about the processes of a run."""
    return {"world_size": world_size(), "backend": _ctx.backend if _ctx else None}


def resume_command(run) -> str:
    """The command that continues ``run`` from this process: under torchrun, with its processes per node."""
    if world_size() == 1:
        return f"txkit train --resume {run}"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    if local == world_size():
        return f"torchrun --nproc_per_node={local} -m txkit train --resume {run}"
    return (f"torchrun --nnodes={world_size() // local} --nproc_per_node={local} (and the rendezvous options it "
            f"started with) -m txkit train --resume {run}")


def check_resume(run, recorded: dict | None) -> None:
    """A run resumes on as many processes as it started on (batch-norm statistics and the DDP state are
    per process; the data order itself does not depend on the world size)."""
    before = int((recorded or {}).get("world_size", 1))
    if before == world_size():
        return
    how = (f"torchrun --nproc_per_node={before} -m txkit train --resume {run} (or the same nodes x processes)"
           if before > 1 else f"txkit train --resume {run} in one process, without torchrun")
    raise TxkitError(f"{run}: trained on {before} process(es), now started on {world_size()}; a run resumes on "
                     f"the number it started on: {how}")


def barrier() -> None:
    if active():
        dist.barrier()


def from_main(value):
    """Process 0's ``value`` on every process."""
    if not active():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- errors -------------------------------------------------------------------------------------------
def _as_agreed(exc: Exception, origin: int) -> tuple[str, int]:
    if isinstance(exc, TxkitError):
        return str(exc), exc.exit_code
    return f"unexpected {type(exc).__name__} on process {origin}: {first_line(exc)}", 1


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def agree(error: Exception | None) -> None:
    """Every process says whether it failed; when one did, all raise the first failure (``Agreed``)."""
    if not active():
        if error is not None:
            raise error
        return
    reports = [None] * world_size()
    dist.all_gather_object(reports, None if error is None else _as_agreed(error, rank()))
    for origin, report in enumerate(reports):
        if report is not None:
            if origin == rank() and error is not None and not isinstance(error, TxkitError):
                raise error  # the process that met a bug keeps its traceback (TXKIT_DEBUG)
            raise Agreed(report[0], report[1], origin)


def main_first(fn, *args):
    """``fn(*args)`` on process 0, then on the others (downloads and caches are made once); a failure on any
    process is raised on all. The others wait for process 0 without a timeout: while it lives, it works."""
    global _counter
    ensure_init()
    if not active():
        return fn(*args)
    _counter += 1
    key, result, error = f"txkit/main_first/{_counter}", None, None
    if is_main():
        result, error = _attempt(fn, *args)
    _wait_for_main(key)
    agree(error if is_main() else None)
    if not is_main():
        result, error = _attempt(fn, *args)
    agree(error)
    return result


def _attempt(fn, *args):
    try:
        return fn(*args), None
    except Exception as exc:  # noqa: BLE001 - reported to every process by agree()
        return None, exc


def _wait_for_main(key: str) -> None:
    try:
        store = dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return  # agree() below then waits, up to the collective timeout
    if is_main():
        store.set(key, "done")
        return
    while not store.check([key]):
        time.sleep(0.2)


def quiet(console):
    """Process 0's console; the others print nothing (no progress bars, no messages)."""
    if is_main():
        return console
    from rich.console import Console

    return Console(file=open(os.devnull, "w"))
