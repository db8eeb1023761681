"""Throughput of txkit-desalinet's DeSaliNet and guided backprop against Captum's GuidedBackprop.

Same model (a TxNet, random weights: speed does not depend on their values), same batch, CPU. Prints a
table of images/s and the ratio to Captum (> 1: faster than Captum), and the largest difference between
our guided backprop and Captum's (both start at the class score, so they must agree). No assertions.

    python bench/bench_visualizers.py [--backbone resnet18] [--batch 8] [--size 224] [--repeats 3] [--smoke]

Needs: pip install captum; pip install -e plugins/txkit-desalinet.
"""

from __future__ import annotations

import argparse
import time

from _common import parse_args


def timed(fn, repeats: int) -> float:
    """Best-of-``repeats`` seconds of one call, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18",
                        help="a txkit backbone with nn.ReLU modules (Captum needs them)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parse_args(parser, smoke={"batch": 2, "size": 32, "repeats": 1, "threads": 1})

    import torch
    from captum.attr import GuidedBackprop

    from txkit.network import TxNet
    from txkit.plugins import create
    from txkit.visualizers.base import default_layer
    from txkit_desalinet.reversal import reconstruct

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = TxNet(create("backbone", args.backbone, num_classes=10, pretrained=False)).eval()
    x = torch.rand(args.batch, 1, args.size, args.size)
    target = 3
    layer = default_layer(net, x)

    def captum_guided():
        return GuidedBackprop(net).attribute(x.clone(), target=target)

    cases = {
        "captum GuidedBackprop (class score)": captum_guided,
        "txkit guided-backprop (class score)": lambda: reconstruct(net, x, "guided-backprop", target=target,
                                                                   seed="gradient"),
        "txkit desalinet (class score)": lambda: reconstruct(net, x, "desalinet", target=target),
        f"txkit desalinet ({layer})": lambda: reconstruct(net, x, "desalinet", layer=layer),
    }
    import warnings

    warnings.filterwarnings("ignore", module="captum")
    difference = (reconstruct(net, x, "guided-backprop", target=target, seed="gradient")
                  - captum_guided()).abs().max().item()
    seconds = {name: timed(fn, args.repeats) for name, fn in cases.items()}
    base = args.batch / seconds["captum GuidedBackprop (class score)"]
    print(f"{args.backbone}, batch {args.batch} x 1 x {args.size} x {args.size}, {args.threads} threads, "
          f"best of {args.repeats}")
    print(f"{'method':<44} {'images/s':>9} {'vs captum':>10}")
    for name, s in seconds.items():
        rate = args.batch / s
        print(f"{name:<44} {rate:>9.2f} {rate / base:>9.2f}x")
    print(f"max |txkit guided-backprop - captum GuidedBackprop| = {difference:.3g}")


if __name__ == "__main__":
    main()
