"""The visualizer contract: the base classes every visualizer subclasses (built-in and plugin).

A visualizer factory (``register_visualizers``) returns an instance of :class:`Visualizer` (per-image maps)
or of :class:`ReportVisualizer` (a visualizer that writes its own files). The pipeline
(:func:`txkit.visualizers.visualize`, ``txkit visualize``) calls the methods below and reads the class
attributes; it never probes for optional methods: the defaults here are what a visualizer that does not
override them gets.

The one required method of a :class:`Visualizer` is ``__call__``::

    from txkit.visualizers import Visualizer, normalise, preserved

    class Brightness(Visualizer):
        name = "brightness"

        def __call__(self, net, images, layer=None, target=None, channel=None):
            return normalise(images[:, 0])       # (N, H, W) in [0, 1], aligned with the input

This module imports neither torch nor numpy, so hook modules and ``txkit list`` stay light.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from torch import nn

__all__ = ["ReportVisualizer", "Visualizer"]


class Visualizer(ABC):
    """A method that gives one map per input image.

    Class attributes (override them in the subclass when the default does not fit):

    ``name``
        The registered name; the pipeline writes ``<image>_<name>.png``.
    ``aligned = True``
        The maps are aligned with the input images, shape (N, H, W); the pipeline draws an overlay. False:
        ``__call__`` returns one picture (1, H, W) that is not an image map (``filters``: a kernel grid).
    ``uses_images = True``
        The result depends on the input images. False (``filters``): the pipeline refuses ``--image``
        instead of ignoring it, and calls the visualizer with ``images=None``.
    ``uses_target = True``
        The map depends on ``target`` (a class score). False (``activations``, ``filters``,
        ``eigencam``): the title shows the predicted class instead of a target.
    ``maps_from_layer = True``
        The map is the chosen layer's spatial map upsampled to the input (activations, CAMs), so a layer
        whose map is under ``txkit.visualizers.pipeline.COARSE_SIDE`` (7) positions a side gives blocks and the pipeline warns. False when the map is
        computed at the input resolution whatever the layer (saliency, reconstructions).

    The arguments every visualizer understands:

    - ``net``: takes (N, 1, H, W) grayscale in [0, 1] (a TxNet or any module with that contract) and must be
      left as it was found (hooks removed, modules and flags restored), even on error; use
      :func:`txkit.visualizers.preserved`.
    - ``images``: (N, 1, H, W) float tensor in [0, 1], or None when ``uses_images`` is False.
    - ``layer``: a module path of ``net.named_modules()`` (``backbone.layer4``), the same path without the
      ``backbone.`` prefix, or a stage name of ``net.stages()``; None: the visualizer's default (usually
      :func:`txkit.visualizers.default_layer`). :func:`txkit.visualizers.resolve_layer` does the lookup.
    - ``target``: a class index, a sequence of class indices (multi-label: the sum of those logits) or None
      (each image's top class). :func:`txkit.visualizers.target_classes` normalises it.
    - ``channel``: a channel index of the layer, ``"top"`` (each image's most active channel) or None.
    """

    name: str = ""
    aligned: bool = True
    uses_images: bool = True
    uses_target: bool = True
    maps_from_layer: bool = True

    @abstractmethod
    def __call__(self, net: "nn.Module", images: "torch.Tensor | None", layer: str | None = None, target: Any = None,
                 channel: Any = None) -> "np.ndarray":
        """One map per image, (N, H, W) float in [0, 1] (``aligned``), or one picture (1, H, W[, 3])."""

    def extra_images(self, net: "nn.Module", images: "torch.Tensor | None", layer: str | None = None,
                     target: Any = None, channel: Any = None) -> "dict[str, np.ndarray]":
        """More pictures per image, ``{suffix: (N, H, W) gray or (N, H, W, 3) colour in [0, 1]}``, written as
        ``<image>_<name>_<suffix>.png`` (default: none)."""
        return {}

    def heat(self, maps: "np.ndarray") -> "np.ndarray":
        """How the maps become the [0, 1] heat of the jet overlay (default: the maps themselves)."""
        return maps

    def layer_for(self, net: "nn.Module", images: "torch.Tensor | None", layer: str | None = None,
                  target: Any = None) -> str | None:
        """The module path this visualizer uses for ``layer`` (and ``target``), for titles and the coarse-layer
        warning; None when it uses no layer (saliency). Default: ``layer`` resolved, else the default layer."""
        from txkit.visualizers.base import default_layer, resolve_layer

        if layer:
            return resolve_layer(net, layer)
        return default_layer(net, images) if images is not None else None


class ReportVisualizer(Visualizer):
    """A visualizer that writes its own files (CSV, plots) for one or more networks instead of per-image maps
    (``frequency-response``). The pipeline calls :meth:`write` once with every subject; ``--image`` is
    refused."""

    aligned: bool = False
    uses_images: bool = False
    uses_target: bool = False
    maps_from_layer: bool = False

    @abstractmethod
    def write(self, nets: "Sequence[tuple[str, nn.Module]]", out_dir: str | Path, layer: str | None = None,
              image_size: int | None = None) -> list[Path]:
        """Write the report for ``(label, net)`` pairs into ``out_dir``; the paths written."""

    def __call__(self, net, images=None, layer=None, target=None, channel=None):
        from txkit.errors import TxkitError

        raise TxkitError(f"{self.name} writes a report (CSV/PNG), not per-image maps; use write() "
                         f"(`txkit visualize RUN --method {self.name}`)")
