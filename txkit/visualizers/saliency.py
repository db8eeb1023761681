"""Gradient saliency (Simonyan et al. 2014): |d score / d input|, max over channels."""

from __future__ import annotations

import numpy as np
import torch

from txkit.visualizers.base import normalise, preserved, target_scores


class Saliency:
    name = "saliency"

    def __call__(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> np.ndarray:
        with preserved(net):
            x = images.detach().clone().requires_grad_(True)
            score = target_scores(net(x), target).sum()
            (grad,) = torch.autograd.grad(score, x)
        return normalise(grad.abs().amax(dim=1))


def saliency(**_) -> Saliency:
    return Saliency()
