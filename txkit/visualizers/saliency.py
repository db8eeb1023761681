"""Gradient saliency (Simonyan et al. 2014): |d score / d input|, max over channels."""

from __future__ import annotations

import numpy as np
import torch

from txkit.visualizers.base import normalise, preserved, target_scores
from txkit.visualizers.contract import Visualizer


class Saliency(Visualizer):
    name = "saliency"
    maps_from_layer = False  # the input gradient, at the input resolution

    def __call__(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> np.ndarray:
        with preserved(net):
            x = images.detach().clone().requires_grad_(True)
            score = target_scores(net(x), target).sum()
            (grad,) = torch.autograd.grad(score, x)
        return normalise(grad.abs().amax(dim=1))

    def layer_for(self, net, images, layer=None, target=None) -> None:
        return None  # no layer: the gradient of the class score w.r.t. the input


def saliency(**_) -> Saliency:
    return Saliency()
