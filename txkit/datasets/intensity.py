"""Intensity rules: how an image's stored values become the network's input.

Contract used by the loader and the image cache (``txkit.training.data``, ``txkit.cache``):

- ``IntensityRule.parse(text)`` checks a rule (``ConfigError`` naming `intensity`);
- ``rule.fit(split)`` returns the rule with its dataset-wide statistics resolved (percentile bounds);
- ``rule.key`` is a string that changes whenever the pixels the rule gives change (the image cache's key);
- ``load_input(split, index, size, rule)`` is one image, decoded, put through the rule and resized:
  a ``uint8`` (size, size) array when the rule keeps 8-bit grey (scaled by 1/255 later), else ``float32``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from txkit.datasets.base import Split


@dataclass(frozen=True)
class IntensityRule:
    text: str = "auto"

    @classmethod
    def parse(cls, text: str) -> "IntensityRule":
        from txkit.config.train import ConfigError

        if text != "auto":
            raise ConfigError(f"`intensity` {text!r} is not a known rule; use auto")
        return cls(text)

    def fit(self, split: Split) -> "IntensityRule":
        return self

    @property
    def key(self) -> str:
        return self.text


def load_input(split: Split, index: int, size: int, rule: IntensityRule) -> np.ndarray:
    from txkit.training.data import resize_gray

    return resize_gray(split.image(index), size)
