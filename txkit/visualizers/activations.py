"""Channel activations of one layer (Sivaramakrishnan et al. 2018, Fig. 3).

The map of an image is one channel of the chosen layer upsampled to the input: the channel given by
``channel``, or by default the image's strongest channel (largest activation), which is the heat map of
the paper. ``extra_images`` adds the grid of the top-k channels, strongest first.
"""

from __future__ import annotations

import numpy as np
import torch

from txkit.errors import TxkitError
from txkit.visualizers.base import (channel_strength, default_layer, forward_to, normalise, preserved,
                                    resolve_layer, upsample)
from txkit.visualizers.contract import Visualizer
from txkit.visualizers.options import DEFAULT_TOP_K
from txkit.visualizers.overlay import tile



def layer_activation(net, images: torch.Tensor, layer: str | None = None) -> tuple[str, torch.Tensor]:
    """The chosen layer (default: :func:`default_layer`) and its (N, C, h, w) activation."""
    path = resolve_layer(net, layer) if layer else default_layer(net, images)
    with preserved(net), torch.no_grad():
        activation = forward_to(net, images, path).detach().clone()
    if activation.dim() != 4:
        raise _not_spatial(path, activation)
    return path, activation


def top_channels(activation: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) channel indices per image, strongest first."""
    return channel_strength(activation).topk(min(k, activation.shape[1]), dim=1).indices


def channel_maps(net, images: torch.Tensor, layer: str | None = None, channels=None,
                 k: int = DEFAULT_TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel maps at the layer's resolution, each min-max scaled to [0, 1], and their indices.

    ``channels``: a list of channel indices (the same for every image) or None for each image's top ``k``.
    Returns maps (N, K, h, w) and indices (N, K).
    """
    path, activation = layer_activation(net, images, layer)
    if channels is None:
        indices = top_channels(activation, k)
    else:
        indices = torch.as_tensor(list(channels), dtype=torch.long).expand(len(activation), -1)
        _check_channels(indices, activation.shape[1])
    chosen = activation.gather(1, indices[..., None, None].expand(-1, -1, *activation.shape[2:]))
    n, count = chosen.shape[:2]
    return normalise(chosen.reshape(n * count, *chosen.shape[2:])).reshape(chosen.shape), indices.numpy()


class Activations(Visualizer):
    name = "activations"
    uses_target = False

    def __init__(self, top_k: int = DEFAULT_TOP_K):
        self.top_k = int(top_k)

    def __call__(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> np.ndarray:
        path, activation = layer_activation(net, images, layer)
        if channel is None or channel == "top":
            index = channel_strength(activation).argmax(dim=1)
        else:
            index = torch.full((len(activation),), int(channel), dtype=torch.long)
            _check_channels(index, activation.shape[1])
        chosen = activation[torch.arange(len(activation)), index]
        return normalise(upsample(chosen, tuple(images.shape[-2:])))

    def extra_images(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> dict[str, np.ndarray]:
        maps, _ = channel_maps(net, images, layer, k=self.top_k)
        return {f"top{maps.shape[1]}": np.stack([tile(per_image) for per_image in maps])}


def _check_channels(indices: torch.Tensor, count: int) -> None:
    bad = indices[(indices < 0) | (indices >= count)]
    if len(bad):
        raise TxkitError(f"--channel {int(bad[0])} is out of range: the layer has {count} channels")


def _not_spatial(path: str, activation: torch.Tensor) -> TxkitError:
    return TxkitError(f"layer {path!r} has output shape {tuple(activation.shape)}, not (N, C, h, w); "
                      f"choose a convolutional layer (`txkit visualize --list-layers`)")


def activations(top_k: int = DEFAULT_TOP_K, **_) -> Activations:
    return Activations(top_k)
