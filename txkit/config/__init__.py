"""The typed configuration spine: :class:`TrainConfig` (every field's type, default, help and validation in
one place) and :class:`WeightsSource`. The CLI's options, the experiment-file checker and the Python API are
derived from it. No torch import here."""

from txkit.config.train import TrainConfig, field_flag
from txkit.errors import ConfigError
from txkit.config.weights import WeightsSource

__all__ = ["ConfigError", "TrainConfig", "WeightsSource", "field_flag"]
