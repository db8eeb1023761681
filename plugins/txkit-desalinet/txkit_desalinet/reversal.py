"""Reverse a network from a layer to the input with one of the ReLU rules (methods.md §5).

Python API::

    from txkit_desalinet.reversal import reconstruct, desalinet, deconvnet, guided_backprop

    raw = reconstruct(net, images, rule="desalinet", layer="backbone.layer4", channel="top")  # tensor
    maps = desalinet()(net, images, layer="backbone.layer4")                                  # (N, H, W)

Where the pass starts (``seed``):

- ``"activation"`` (DeconvNet, DeSaliNet): the forward activation of the chosen layer is sent back as it
  is, so the result reconstructs that feature map in input space (Suzuki et al., Fig. 3).
- ``"gradient"`` (guided backprop, saliency): a 1 on every kept unit, i.e. the gradient of their sum.

Which units are kept: ``channel=None`` the whole layer, an int one channel, ``"top"`` each image's most
active channel, a list several. ``layer=None`` starts from the network's output when ``target`` is given
(then ``channel`` is the target class, a list for a multi-label target) or when the visualizer starts at
the class score by default (guided backprop: the top class); otherwise at :func:`default_layer`.
"""

from __future__ import annotations

import numpy as np
import torch

from txkit import (Visualizer, channel_mask, default_layer, forward_to, normalise, preserved, reconstruction_heat,
                   resolve_layer, target_classes)
from txkit_desalinet.rules import check_rule, relu_rule

SEEDS = ("activation", "gradient")


def start_point(net, images: torch.Tensor, layer, channel, target, from_score: bool) -> tuple[str | None, object]:
    """(layer path or None for the network output, channel selection) of the backward pass."""
    if layer is None and (target is not None or from_score):
        return None, target_classes(target) if target is not None else (channel if channel is not None else "top")
    path = resolve_layer(net, layer) if layer else default_layer(net, images)
    return path, channel


def reconstruct(net, images: torch.Tensor, rule: str = "desalinet", layer: str | None = None, channel=None,
                target=None, seed: str = "activation", from_score: bool = False) -> torch.Tensor:
    """The input-space signal (N, C_in, H, W) of the reversed network (raw, not normalised)."""
    check_rule(rule)
    if seed not in SEEDS:
        raise ValueError(f"seed must be one of {SEEDS}, got {seed!r}")
    path, keep = start_point(net, images, layer, channel, target, from_score)
    with preserved(net), relu_rule(net, rule):
        x = images.detach().clone().requires_grad_(True)
        start = forward_to(net, x, path)
        values = start.detach() if seed == "activation" else torch.ones_like(start)
        (grad,) = torch.autograd.grad(start, x, grad_outputs=values * channel_mask(start, keep))
    return grad.detach()


class Reversal(Visualizer):
    """A visualizer of the family: the reconstruction summed over input channels, min-max scaled."""

    maps_from_layer = False  # reconstructed in input space at the input resolution, whatever the layer

    def __init__(self, name: str, rule: str, seed: str, from_score: bool):
        self.name, self.rule, self.seed, self.from_score = name, rule, seed, from_score

    def __call__(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> np.ndarray:
        raw = reconstruct(net, images, self.rule, layer, channel, target, self.seed, self.from_score)
        return normalise(raw.sum(dim=1))

    def heat(self, maps: np.ndarray) -> np.ndarray:
        return reconstruction_heat(maps)

    def layer_for(self, net, images: torch.Tensor, layer=None, target=None) -> str | None:
        """The layer the pass starts from; None when it starts at the network output (a class score)."""
        return start_point(net, images, layer, None, target, self.from_score)[0]


def desalinet(**_) -> Reversal:
    return Reversal("desalinet", "desalinet", "activation", from_score=False)


def deconvnet(**_) -> Reversal:
    return Reversal("deconvnet", "deconvnet", "activation", from_score=False)


def guided_backprop(**_) -> Reversal:
    return Reversal("guided-backprop", "guided-backprop", "gradient", from_score=True)
