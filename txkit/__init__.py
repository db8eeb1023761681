"""txkit: transfer learning for grayscale medical images with PyTorch.

Only this module is txkit's API (pluggy's rule): plugins and scripts import from ``txkit`` (and plugin tests
from :mod:`txkit.testing`); every submodule is txkit's own layout and may change. docs/plugins.md, "Public
API", lists each name. They are:

- plugin hooks and options: ``hookimpl``, ``Options``, ``Field``, ``NoOptions``, ``validate_options``,
  ``check_fractions``;
- errors: ``TxkitError``, ``DataError``, ``ConfigError``, ``WeightsError``, ``UnknownNameError``;
- the registries: ``create(kind, name, **options)``, ``registry(kind)``;
- the contract of each plugin kind: backbones (``Backbone``, ``InputSpec``, ...), colorizers (``Colorizer``),
  datasets (``TxDataset``, ``Split``, ``file_split``, ``bin_ages``, ...), strategies (``Strategy``, ``Phase``),
  visualizers (``Visualizer``, ``ReportVisualizer`` and their helpers);
- the Python API: ``train``, ``resume``, ``Run``, ``TrainConfig``, ``WeightsSource``, ``RunDir``,
  ``run_experiment``, ``report_experiment``, ``list_entries``; the CLI's click group ``build_cli``; and
  ``__version__``.

Every name is imported on first use, so ``import txkit`` stays light: it imports no torch (nor numpy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from txkit.hookspecs import hookimpl

__version__ = "0.1.0"

# ``txkit.registry`` is the lookup function txkit.plugins.registry, not the submodule txkit/registry.py (its
# Registry and Entry classes). Importing a submodule sets the package attribute of its name, but only the first
# time, so the submodule is imported now and that attribute dropped: later ``from txkit.registry import ...``
# finds it in sys.modules and leaves the name to ``__getattr__`` below.
importlib.import_module("txkit.registry")
globals().pop("registry")

_EXPORTS = {
    # plugin options
    "Options": "txkit.options", "Field": "txkit.options", "NoOptions": "txkit.options",
    "validate_options": "txkit.options", "check_fractions": "txkit.options",
    # errors
    "TxkitError": "txkit.errors", "DataError": "txkit.errors", "ConfigError": "txkit.errors",
    "WeightsError": "txkit.errors", "UnknownNameError": "txkit.errors",
    # the registries
    "create": "txkit.plugins", "registry": "txkit.plugins",
    # backbones (torch)
    "Backbone": "txkit.backbones.base", "InputSpec": "txkit.backbones.base",
    "IMAGENET_MEAN": "txkit.backbones.base", "IMAGENET_STD": "txkit.backbones.base",
    "sequential_stages": "txkit.backbones.base", "load_state_by_position": "txkit.backbones.base",
    # colorizers (torch)
    "Colorizer": "txkit.colorizers.base",
    # datasets (numpy)
    "TxDataset": "txkit.datasets.base", "Split": "txkit.datasets.base", "load_gray": "txkit.datasets.base",
    "file_split": "txkit.datasets.files", "require_dir": "txkit.datasets.files",
    "list_images": "txkit.datasets.files", "load_image": "txkit.datasets.files",
    "group_split": "txkit.datasets.files", "drop_unreadable": "txkit.datasets.files",
    "readable": "txkit.datasets.files", "as_bool": "txkit.datasets.files",
    "parse_age_bins": "txkit.datasets.metadata", "bin_ages": "txkit.datasets.metadata",
    "subgroup_values": "txkit.datasets.metadata", "AGE_BINS": "txkit.datasets.metadata",
    # strategies
    "Strategy": "txkit.strategies.base", "Phase": "txkit.strategies.base",
    # visualizers: the contract (no torch) and the helpers for writing one (torch; pictures: numpy, matplotlib)
    "Visualizer": "txkit.visualizers.contract", "ReportVisualizer": "txkit.visualizers.contract",
    "default_layer": "txkit.visualizers.base", "resolve_layer": "txkit.visualizers.base",
    "layer_paths": "txkit.visualizers.base", "stages_of": "txkit.visualizers.base",
    "output_shapes": "txkit.visualizers.base", "forward_to": "txkit.visualizers.base",
    "target_classes": "txkit.visualizers.base", "target_scores": "txkit.visualizers.base",
    "channel_mask": "txkit.visualizers.base", "channel_strength": "txkit.visualizers.base",
    "preserved": "txkit.visualizers.base", "normalise": "txkit.visualizers.base",
    "upsample": "txkit.visualizers.base", "reconstruction_heat": "txkit.visualizers.overlay",
    "tile": "txkit.visualizers.overlay", "jet_overlay": "txkit.visualizers.overlay",
    "save_png": "txkit.visualizers.overlay", "network_from_weights": "txkit.visualizers.models",
    # the Python API
    "train": "txkit.api", "resume": "txkit.api", "Run": "txkit.api", "run_experiment": "txkit.api",
    "report_experiment": "txkit.api", "list_entries": "txkit.api", "TrainConfig": "txkit.config.train",
    "WeightsSource": "txkit.config.weights", "RunDir": "txkit.rundir",
    # the command line as a click group (click's CliRunner, embedding): what the `txkit` command runs
    "build_cli": "txkit.cli.main",
}
_MODULES = ("testing",)  # public submodules, also loaded on first use

__all__ = ["__version__", "hookimpl", *_EXPORTS, *_MODULES]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"txkit.{name}")
    else:
        raise AttributeError(f"module 'txkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; at run time the names load on first use
    from txkit import testing
    from txkit.backbones.base import (IMAGENET_MEAN, IMAGENET_STD, Backbone, InputSpec, load_state_by_position,
                                      sequential_stages)
    from txkit.colorizers.base import Colorizer
    from txkit.config.train import TrainConfig
    from txkit.config.weights import WeightsSource
    from txkit.datasets.base import Split, TxDataset, load_gray
    from txkit.datasets.files import (as_bool, drop_unreadable, file_split, group_split, list_images, load_image,
                                      readable, require_dir)
    from txkit.datasets.metadata import AGE_BINS, bin_ages, parse_age_bins, subgroup_values
    from txkit.errors import ConfigError, DataError, TxkitError, UnknownNameError, WeightsError
    from txkit.options import Field, NoOptions, Options, check_fractions, validate_options
    from txkit.plugins import create, registry
    from txkit.rundir import RunDir
    from txkit.strategies.base import Phase, Strategy
    from txkit.visualizers.base import (channel_mask, channel_strength, default_layer, forward_to, layer_paths,
                                        normalise, output_shapes, preserved, resolve_layer, stages_of,
                                        target_classes, target_scores, upsample)
    from txkit.visualizers.contract import ReportVisualizer, Visualizer
    from txkit.visualizers.models import network_from_weights
    from txkit.visualizers.overlay import jet_overlay, reconstruction_heat, save_png, tile
