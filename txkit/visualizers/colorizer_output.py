"""The 3-channel output of a network's colorizer (what the backbone sees in place of RGB).

The colour picture is ``TxNet.colorized``, the same image `txkit colorize` writes: a learned colorizer's
output mapped back through the backbone's normalisation to RGB in [0, 1]. The map (contract) is one
channel (``channel`` 0, 1 or 2) min-max scaled, or by default the luminance of the colour picture;
``extra_images`` gives the colour picture itself.
"""

from __future__ import annotations

import numpy as np
import torch

from txkit.errors import TxkitError
from txkit.visualizers.base import normalise, preserved, upsample
from txkit.visualizers.contract import Visualizer

LUMINANCE = (0.299, 0.587, 0.114)


def colorizer_output(net, images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1]: what the colorizer hands the backbone, as displayable RGB."""
    colorizer = getattr(net, "colorizer", None)
    if colorizer is None:
        raise TxkitError("colorizer-output: this network has no colorizer (gray goes to the backbone by "
                         "repeat/sum); use a run trained with `colorizer`")
    with preserved(net), torch.no_grad():
        out = net.colorized(images)
    return upsample(out.float(), tuple(images.shape[-2:]))


def rgb_pictures(out: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) in [0, 1]."""
    return out.permute(0, 2, 3, 1).cpu().numpy()


class ColorizerOutput(Visualizer):
    name = "colorizer-output"
    uses_target = False
    maps_from_layer = False

    def layer_for(self, net, images, layer=None, target=None) -> str | None:
        return "colorizer" if getattr(net, "colorizer", None) is not None else None

    def __call__(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> np.ndarray:
        out = colorizer_output(net, images)
        if channel is None or channel == "top":
            return rgb_pictures(out) @ np.asarray(LUMINANCE)
        if not 0 <= int(channel) < out.shape[1]:
            raise TxkitError(f"--channel {channel} is out of range: the colorizer gives {out.shape[1]} channels")
        return normalise(out[:, int(channel)])

    def extra_images(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> dict[str, np.ndarray]:
        return {"rgb": rgb_pictures(colorizer_output(net, images))}


def colorizer_output_visualizer(**_) -> ColorizerOutput:
    return ColorizerOutput()
