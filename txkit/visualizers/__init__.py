"""Visualizers: the public API for visualizer plugins and for calling the pipeline from Python.

Everything a visualizer plugin needs is imported from here (documented in docs/plugins.md, "Public API");
the submodules (``base``, ``overlay``, ``contract``, ``pipeline``...) are txkit's own layout and may change.

- The contract: :class:`Visualizer` (per-image maps) and :class:`ReportVisualizer` (writes its own files).
- Helpers for writing one: layers (:func:`default_layer`, :func:`resolve_layer`, :func:`forward_to`,
  :func:`output_shapes`, :func:`layer_paths`, :func:`stages_of`), targets (:func:`target_classes`,
  :func:`target_scores`), channels (:func:`channel_mask`, :func:`channel_strength`), the network left as it
  was (:func:`preserved`), maps (:func:`normalise`, :func:`upsample`, :func:`reconstruction_heat`,
  :func:`tile`, :func:`jet_overlay`, :func:`save_png`).
- The pipeline `txkit visualize` runs: :func:`visualize` (returns a :class:`VisualizationResult`),
  :func:`load_subjects`, :func:`list_layers`; networks to visualize: :func:`network_from_weights`,
  :class:`Subject`.

Importing this package imports neither torch nor numpy: the names are loaded on first use (module
``__getattr__``), so hook modules that import it stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from txkit.visualizers.contract import ReportVisualizer, Visualizer

_LAZY = {
    # writing a visualizer (torch)
    "channel_mask": "base", "channel_strength": "base", "default_layer": "base", "forward_to": "base",
    "layer_paths": "base", "normalise": "base", "output_shapes": "base", "preserved": "base",
    "resolve_layer": "base", "stages_of": "base", "target_classes": "base", "target_scores": "base",
    "upsample": "base",
    # pictures (numpy, matplotlib, scipy)
    "jet_overlay": "overlay", "reconstruction_heat": "overlay", "save_png": "overlay", "tile": "overlay",
    # the pipeline and its subjects
    "COARSE_SIDE": "pipeline", "LayerInfo": "pipeline", "SubjectResult": "pipeline",
    "VisualizationResult": "pipeline", "list_layers": "pipeline", "load_subjects": "pipeline",
    "visualize": "pipeline",
    "Subject": "models", "network_from_weights": "models",
}

__all__ = ["ReportVisualizer", "Visualizer", *sorted(_LAZY)]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'txkit.visualizers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"txkit.visualizers.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover
    from txkit.visualizers.base import (channel_mask, channel_strength, default_layer, forward_to, layer_paths,
                                        normalise, output_shapes, preserved, resolve_layer, stages_of,
                                        target_classes, target_scores, upsample)
    from txkit.visualizers.models import Subject, network_from_weights
    from txkit.visualizers.overlay import jet_overlay, reconstruction_heat, save_png, tile
    from txkit.visualizers.pipeline import (COARSE_SIDE, LayerInfo, SubjectResult, VisualizationResult,
                                            list_layers, load_subjects, visualize)
