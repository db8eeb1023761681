"""txkit's training epoch against a minimal hand-written PyTorch loop: same network, data, batch size, loss and
optimiser settings, one process, interleaved repeats. Reports the time ratio (goal: overhead under 5 %).

    python bench/bench_train_step.py [--backbone resnet18] [--size 64] [--repeat 3] [--per-class N] [--smoke]
"""

import argparse
import io
import statistics
import time

import torch
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from txkit.config import TrainConfig
from txkit.training.engine import Trainer
from txkit.training.session import progress_bar

from _common import parse_args, same_optimizer


def make_trainer(args, out):
    data = {"size": str(args.size)} | ({"per_class": str(args.per_class)} if args.per_class else {})
    cfg = TrainConfig(backbone=args.backbone, weights="none", strategy="full", epochs=args.repeat + 1,
                      batch_size=args.batch_size, image_size=args.size, augment=False, schedule="constant",
                      device="cpu", data_options=data)
    trainer = Trainer(cfg, out)
    trainer.start_phase(0)
    return trainer


def txkit_epoch(trainer, epoch):
    with progress_bar(Console(file=io.StringIO())) as progress:
        task = progress.add_task("train", total=trainer.steps_per_epoch, epoch="-", loss=0.0, val="-")
        start = time.perf_counter()
        trainer.train_epoch(epoch, progress, task)
        return time.perf_counter() - start


def plain_epoch(net, optimizer, loader):
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    start = time.perf_counter()
    for x, y in loader:
        loss = loss_fn(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=None,
                        help="synthetic-dld images per class and split (default: train 80, val 30, test 40)")
    # 14 images in batches of 4: no batch of one image, which batch-norm refuses in the plain loop
    args = parse_args(parser, smoke={"size": 32, "batch_size": 4, "repeat": 1, "per_class": 2})
    import tempfile
    from pathlib import Path

    trainer = make_trainer(args, Path(tempfile.mkdtemp()))
    txkit_epoch(trainer, 0)  # warm-up: fills txkit's resized-image cache
    images = torch.stack([trainer.train_data[i][0] for i in range(len(trainer.train_data))])
    labels = torch.as_tensor(trainer.train_data.split.labels, dtype=torch.long)
    loader = DataLoader(TensorDataset(images, labels), batch_size=args.batch_size, shuffle=True)
    net = trainer.net  # the same module as txkit's
    optimizer = same_optimizer(trainer, net)
    plain_epoch(net, optimizer, loader)
    txkit_times, plain_times = [], []
    for epoch in range(1, args.repeat + 1):
        txkit_times.append(txkit_epoch(trainer, epoch))
        plain_times.append(plain_epoch(net, optimizer, loader))
    t, p = statistics.median(txkit_times), statistics.median(plain_times)
    print(f"{args.backbone} at {args.size}px, batch {args.batch_size}, {len(images)} images, {args.repeat} repeats")
    print(f"{'loop':14} {'median s/epoch':>15}")
    print(f"{'plain PyTorch':14} {p:15.3f}")
    print(f"{'txkit':14} {t:15.3f}")
    print(f"ratio txkit/plain: {t / p:.3f} (overhead {100 * (t / p - 1):+.1f} %)")


if __name__ == "__main__":
    main()
