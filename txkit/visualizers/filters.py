"""Convolution kernels as a grid (Sivaramakrishnan et al. 2018, Fig. 2).

How this fits the contract: the kernels do not depend on the images, so ``Filters`` returns ONE grid image
as an array of shape (1, H, W) in [0, 1] (``aligned = False``: not aligned with the input, no overlay).
Each cell is one output channel's kernel, min-max scaled on its own. A kernel with several input channels
is shown summed over them: that is the kernel a gray input actually meets when TxNet repeats it to RGB
(or sums the first conv). ``channel`` picks one input channel instead. For a 3-channel first conv,
``extra_images`` also gives the colour (RGB) kernels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from txkit.errors import TxkitError
from txkit.visualizers.base import normalise, resolve_layer
from txkit.visualizers.contract import Visualizer
from txkit.visualizers.overlay import tile


def first_conv_path(net: nn.Module) -> str:
    """The first 2-D convolution of the backbone (of the whole module when it has no ``backbone``)."""
    prefix = "backbone." if hasattr(net, "backbone") else ""
    for name, module in net.named_modules():
        if name.startswith(prefix) and isinstance(module, nn.Conv2d):
            return name
    raise TxkitError("the network has no 2-D convolution to show")


def conv_layer(net: nn.Module, layer: str | None) -> tuple[str, nn.Conv2d]:
    path = resolve_layer(net, layer) if layer else first_conv_path(net)
    module = net.get_submodule(path)
    if not isinstance(module, nn.Conv2d):
        raise TxkitError(f"layer {path!r} is a {type(module).__name__}, not a Conv2d; filters needs a convolution "
                         f"(`txkit visualize --list-layers` shows them)")
    return path, module


def kernels(conv: nn.Conv2d, channel: int | None = None) -> torch.Tensor:
    """(C_out, kh, kw): each kernel summed over its input channels, or its slice for input ``channel``."""
    weight = conv.weight.detach().float()
    if channel is None or channel == "top":
        return weight.sum(dim=1)
    if not 0 <= int(channel) < weight.shape[1]:
        raise TxkitError(f"--channel {channel} is out of range: the kernels have {weight.shape[1]} input channels")
    return weight[:, int(channel)]


def kernel_grid(conv: nn.Conv2d, channel: int | None = None) -> np.ndarray:
    return tile(normalise(kernels(conv, channel)))


def rgb_kernel_grid(conv: nn.Conv2d) -> np.ndarray:
    """(H, W, 3) grid of 3-input-channel kernels as colour images, each min-max scaled over its RGB."""
    weight = conv.weight.detach().float()
    scaled = normalise(weight).transpose(0, 2, 3, 1)
    return tile(scaled)


class Filters(Visualizer):
    name = "filters"
    aligned = False
    uses_images = False  # the kernels do not depend on the input
    uses_target = False
    maps_from_layer = False

    def __call__(self, net, images=None, layer=None, target=None, channel=None) -> np.ndarray:
        _, conv = conv_layer(net, layer)
        return kernel_grid(conv, channel)[None]

    def layer_for(self, net, images=None, layer=None, target=None) -> str:
        return conv_layer(net, layer)[0]

    def extra_images(self, net, images=None, layer=None, target=None, channel=None) -> dict[str, np.ndarray]:
        _, conv = conv_layer(net, layer)
        if conv.weight.shape[1] != 3 or channel is not None:
            return {}
        return {"rgb": rgb_kernel_grid(conv)[None]}


def filters(**_) -> Filters:
    return Filters()
