"""The frozen-prefix feature cache: a `last-layer` run and a `finetune-from` run of the last conv stage, each
with the cache (the default), with `--no-feature-cache`, and as a plain hand-written PyTorch loop over the same
data and network, all measured in this one process. Reports end-to-end time ratios and per-epoch ratios after
the first epoch (goals on 2 CPU cores: last-layer >= 3x end to end and >= 10x per epoch; finetune-from >= 2x).

    python bench/bench_feature_cache.py [--backbone efficientnet_lite0] [--stage block7] [--epochs 10]
                                        [--per-class 8] [--size 224] [--smoke]
"""

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from txkit.training import session
from txkit.training.build import build_network, build_strategy
from txkit.config import TrainConfig
from txkit.training.engine import Trainer

from _common import parse_args


def config(args, strategy, **extra):
    return TrainConfig(backbone=args.backbone, weights="imagenet", strategy=strategy, epochs=args.epochs,
                       batch_size=args.batch_size, image_size=args.size, device="cpu", seed=0,
                       schedule="constant", data_options={"per_class": str(args.per_class), "size": str(args.size)},
                       **extra)


def txkit_run(cfg, out):
    start = time.perf_counter()
    run_dir, summary = session.train(cfg, out, console=Console(file=io.StringIO()))
    total = time.perf_counter() - start
    epochs = [json.loads(line)["seconds"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return total, epochs, summary


def tensors(data):
    images = torch.stack([data[i][0] for i in range(len(data))])
    return images, torch.as_tensor(data.split.labels, dtype=torch.long)


def plain_run(cfg, num_classes, train, val):
    """A hand-written loop: the same network and frozen stages, SGD at the strategy's rate, flips, val per epoch."""
    start = time.perf_counter()
    strategy = build_strategy(cfg)
    torch.manual_seed(0)
    net = build_network(cfg, num_classes, strategy)
    trainable = strategy.trainable(strategy.phases[0], net.stage_names())
    net.set_trainable(trainable)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=strategy.phases[0].lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(*train), batch_size=cfg.batch_size, shuffle=True)
    epochs = []
    for _ in range(cfg.epochs):
        epoch_start = time.perf_counter()
        net.train()
        for x, y in loader:
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = loss_fn(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        evaluate(net, val, cfg.batch_size * 2)
        epochs.append(time.perf_counter() - epoch_start)
    evaluate(net, val, cfg.batch_size * 2)  # stands for the test pass of a txkit run (synthetic-dld: same size)
    return time.perf_counter() - start, epochs


@torch.no_grad()
def evaluate(net, data, batch_size):
    net.eval()
    return torch.cat([net(x) for x, _ in DataLoader(TensorDataset(*data), batch_size=batch_size)])


def later(epochs):
    return statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--stage", default="block7", help="finetune-from this stage (the last conv block)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=8, help="synthetic-dld images per class and split")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parse_args(parser, smoke={"epochs": 2, "per_class": 1, "size": 32, "batch_size": 4})
    root = Path(tempfile.mkdtemp(prefix="bench-feature-cache-"))
    probe = Trainer(config(args, "last-layer", feature_cache=False))  # builds and warms the data once
    train, val = tensors(probe.train_data), tensors(probe.val_data)
    print(f"{args.backbone} at {args.size}px, {len(train[0])} train / {len(val[0])} val images, batch "
          f"{args.batch_size}, {args.epochs} epochs, {torch.get_num_threads()} threads")
    header = (f"{'run':34} {'total s':>8} {'epoch 1 s':>10} {'later s':>8} {'total x':>8} {'epoch x':>8} "
              f"{'vs plain':>8}")
    rows, checks = [], []
    for strategy in ("last-layer", f"finetune-from:{args.stage}"):
        uncached = txkit_run(config(args, strategy, feature_cache=False), root / f"{strategy}-off")
        cached = txkit_run(config(args, strategy), root / f"{strategy}-on")
        plain = plain_run(config(args, strategy), probe.dataset.num_classes, train, val)
        base_total, base_later = uncached[0], later(uncached[1])
        runs = (("txkit --no-feature-cache", uncached), ("txkit (feature cache)", cached), ("plain PyTorch loop", plain))
        for name, (total, epochs, *_rest) in runs:
            rows.append(f"{strategy + ' ' + name:34} {total:8.1f} {epochs[0]:10.2f} {later(epochs):8.3f} "
                        f"{base_total / total:8.2f} {base_later / later(epochs):8.2f} {plain[0] / total:8.2f}")
        fc = cached[2]["feature_cache"]
        checks.append(f"{strategy}: cache used {fc['used']}, prefix up to {fc['phases'][0].get('boundary')}, "
                      f"summary's estimate of time saved {fc['saved_s']:.1f} s, measured {base_total - cached[0]:.1f} s")
    print(header)
    print("\n".join(rows))
    print("total x / epoch x: how many times faster than txkit --no-feature-cache (end to end / median epoch "
          "after the first); vs plain: plain loop's end-to-end time / this run's")
    print("\n".join(checks))


if __name__ == "__main__":
    main()
