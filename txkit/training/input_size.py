"""The image size a run trains at, checked against what the network can take."""

from __future__ import annotations

import torch

from txkit.config import TrainConfig
from txkit.datasets.base import TxDataset
from txkit.errors import TxkitError
from txkit.network import TxNet


def image_size(cfg: TrainConfig, dataset: TxDataset, net: TxNet) -> int:
    size = cfg.image_size or dataset.info.get("image_size") or 224
    if net.colorizer is not None and size % 8:
        raise TxkitError(f"image size {size} is not divisible by 8, which colorizers need; pass `image_size`")
    return int(size)


@torch.no_grad()
def check_input_size(net: TxNet, size: int, backbone: str, device) -> None:
    """One forward of a blank image, so a size the network shrinks to nothing fails in one line before training
    (instead of a RuntimeError at the first batch)."""
    was_training = net.training
    try:
        with torch.random.fork_rng(devices=[]):
            net.eval()(torch.zeros(1, 1, size, size, device=device))
    except RuntimeError as exc:
        message = str(exc).lower()
        if "too small" not in message and "greater than actual input size" not in message:
            raise
        raise TxkitError(f"`image_size` {size} is too small for backbone {backbone}: its layers shrink the image "
                         f"to nothing; use `image_size` {smallest_size(net, size, device)} or more") from None
    finally:
        net.train(was_training)


def smallest_size(net: TxNet, size: int, device) -> int:
    for candidate in range(size + 8 - size % 8, 1025, 8):
        try:
            net(torch.zeros(1, 1, candidate, candidate, device=device))
            return candidate
        except RuntimeError:
            continue
    return 1024
