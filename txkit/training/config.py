"""The run configuration lives in :mod:`txkit.config`; this name is kept for existing imports."""

from txkit.config import TrainConfig

__all__ = ["TrainConfig"]
