"""One run on 1 process against the same run on N processes (torchrun + DistributedDataParallel), for txkit's
training loop and for a minimal hand-written PyTorch DDP loop (DistributedSampler, same network, data, global
batch and optimiser), measured in the same invocation. Reports training images/s, the N/1 ratio of each and
txkit/plain at N processes.

    python bench/bench_ddp.py [--backbone resnet18] [--size 64] [--batch-size 64] [--repeat 2] [--rounds 2]
                              [--per-class 40] [--nproc N] [--smoke]

CPU (no GPU visible): N = 2 processes on gloo, each with half of the cores (OMP_NUM_THREADS), against one process
with all of them: on a 2-core machine the ratio is about 1x (the cores are shared, and gradients also have to
be averaged), which says that DDP costs little, not that it speeds anything up there. GPUs: N = the number of
GPUs (nccl, one process per GPU, LOCAL_RANK) and the global batch is --batch-size per GPU times N, so the
N/1 ratio reads as the scaling of a run that keeps every GPU equally busy (ideal: N x).
"""

import argparse
import copy
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import parse_args, same_optimizer

RESULT = "RESULT "


def worker(args) -> None:
    """One process of a measured run (started by torchrun, or alone for N = 1)."""
    import torch
    from rich.console import Console
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from txkit.training import distributed
    from txkit.config import TrainConfig
    from txkit.training.engine import Trainer
    from txkit.training.session import progress_bar

    distributed.ensure_init()
    cfg = TrainConfig(backbone=args.backbone, weights="none", strategy="full", epochs=args.repeat + 1,
                      batch_size=args.batch_size, image_size=args.size, augment=False, schedule="constant",
                      device=args.device, image_cache=False, feature_cache=False,
                      data_options={"size": "32", "per_class": str(args.per_class)})
    trainer = Trainer(cfg, tempfile.mkdtemp())
    trainer.start_phase(0)
    images = torch.stack([trainer.train_data[i][0] for i in range(len(trainer.train_data))])
    labels = torch.as_tensor(trainer.train_data.split.labels, dtype=torch.long)
    net = copy.deepcopy(trainer.net)
    device = trainer.runtime.device
    plain_model = net if not distributed.active() else torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = same_optimizer(trainer, net)
    data = TensorDataset(images, labels)
    sampler = DistributedSampler(data, shuffle=True, seed=0) if distributed.active() else None
    loader = DataLoader(data, batch_size=args.batch_size // distributed.world_size(), sampler=sampler,
                        shuffle=sampler is None)
    loss_fn = torch.nn.CrossEntropyLoss()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        distributed.barrier()

    def plain_epoch(epoch):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        sync()
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(plain_model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()
        return time.perf_counter() - start

    def txkit_epoch(epoch):
        with progress_bar(Console(file=io.StringIO())) as progress:
            task = progress.add_task("train", total=trainer.steps_per_epoch, epoch="-", loss=0.0, val="-")
            sync()
            start = time.perf_counter()
            trainer.train_epoch(epoch, progress, task)
            sync()
            return time.perf_counter() - start

    txkit_epoch(0), plain_epoch(0)  # warm-up: caches, DDP buckets, kernels
    txkit_times, plain_times = [], []
    for epoch in range(1, args.repeat + 1):
        txkit_times.append(txkit_epoch(epoch))
        plain_times.append(plain_epoch(epoch))
    if distributed.is_main():
        n = len(images)
        print(RESULT + json.dumps({"images": n, "txkit": n / statistics.median(txkit_times),
                                   "plain": n / statistics.median(plain_times),
                                   "backend": distributed.record()["backend"], "device": str(device)}), flush=True)
    distributed.shutdown()


def measure(args, nproc: int) -> dict:
    worker_args = [__file__, "--worker", "--backbone", args.backbone, "--size", str(args.size), "--batch-size",
                   str(args.batch_size), "--repeat", str(args.repeat), "--per-class", str(args.per_class),
                   "--device", args.device]
    env = dict(os.environ)
    if args.device == "cpu":  # all cores for one process, an equal share for each of N
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    if nproc == 1:
        env.pop("WORLD_SIZE", None)
        command = [sys.executable, *worker_args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   *worker_args]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
    if out.returncode != 0 or not lines:
        sys.exit(f"the {nproc}-process run failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch (default 64 on CPU, 64 per GPU times the GPUs)")
    parser.add_argument("--repeat", type=int, default=2, help="measured epochs (after one warm-up epoch)")
    parser.add_argument("--per-class", type=int, default=40, help="synthetic-dld training images per class")
    parser.add_argument("--nproc", type=int, default=None, help="default: the GPUs, else 2")
    parser.add_argument("--rounds", type=int, default=2, help="alternating 1-process / N-process measurements")
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    # 14 images, a global batch of 8: no batch of one image (batch-norm refuses it) in 1 or 2 processes
    args = parse_args(parser, smoke={"size": 32, "batch_size": 8, "repeat": 1, "rounds": 1, "per_class": 2})
    if args.worker:
        return worker(args)
    import torch

    gpus = torch.cuda.device_count()
    args.device = "cuda" if gpus else "cpu"
    args.nproc = args.nproc or (gpus if gpus > 1 else 2)
    if gpus and args.nproc > gpus:
        sys.exit(f"--nproc {args.nproc}: only {gpus} GPU(s) visible")
    args.batch_size = args.batch_size or (64 * args.nproc if gpus else 64)
    rounds = [(measure(args, 1), measure(args, args.nproc)) for _ in range(args.rounds)]  # alternated: load drifts
    one, many = ({key: statistics.median(r[i][key] for r in rounds) if key in ("txkit", "plain") else rounds[0][i][key]
                  for key in rounds[0][i]} for i in (0, 1))
    n = args.nproc
    print(f"{args.backbone} at {args.size}px, global batch {args.batch_size}, {one['images']} images, {args.repeat} "
          f"measured epochs, median of {args.rounds} alternating rounds; {many['device'].split(':')[0]}, backend {many['backend']}, {os.cpu_count()} cores")
    print(f"{'loop':14} {'1 process img/s':>16} {f'{n} processes img/s':>19} {f'ratio {n}/1':>10}")
    for name in ("plain", "txkit"):
        label = "plain PyTorch" if name == "plain" else "txkit"
        print(f"{label:14} {one[name]:16.1f} {many[name]:19.1f} {many[name] / one[name]:10.2f}")
    print(f"ratio txkit/plain: {one['txkit'] / one['plain']:.3f} at 1 process, {many['txkit'] / many['plain']:.3f} "
          f"at {n} processes")
    if args.device == "cpu":
        print("CPU: the processes share the machine's cores, so on an otherwise idle machine about 1x is expected "
              "(the ratio shows what DDP's gradient averaging costs, not a speed-up). On a busy machine one process "
              "with all cores' threads loses more to contention (its threads wait for each other) than N "
              "single-threaded processes, and the ratio rises above 1. On GPUs the N/1 ratio is the scaling "
              "(ideal N x).")
    else:
        print(f"GPUs: each of the {n} GPUs gets {args.batch_size // n} images per step; ideal scaling is {n}x. "
              f"Far below: the input pipeline (--num-workers, image cache) or gradient averaging (small "
              f"network, slow interconnect) limits it.")


if __name__ == "__main__":
    main()
