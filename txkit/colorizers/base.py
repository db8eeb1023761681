"""The colorizer contract: an ``nn.Module`` mapping (N, 1, H, W) gray to the (N, 3, H, W) a backbone takes.

Any ``nn.Module`` is a colorizer; txkit reads two class attributes of it, with the defaults below.
Subclassing :class:`Colorizer` is optional: it gives those defaults and refuses a misspelt value when the
class is defined, instead of txkit silently taking the default.

``output_kind``
    ``"unit"``: the output lies in [0, 1] and txkit applies the backbone's normalisation after it (fixed
    colorizers such as ``repeat``). ``"learned"`` (the default): the module learns to give the backbone's
    normalised input itself; its input is the gray normalised by the thesis statistics.
``input_units``
    ``"unit"`` (the default): the input is in [0, 1]. ``"HU"``: the module takes raw Hounsfield units, which
    only `intensity` hu gives (may be a property, as for the built-in ``window``).
"""

from __future__ import annotations

from torch import nn

OUTPUT_KINDS = ("unit", "learned")
INPUT_UNITS = ("unit", "HU")


class Colorizer(nn.Module):
    """Base class of a colorizer: implement ``forward(x)``, (N, 1, H, W) -> (N, 3, H, W), any H, W divisible by 8."""

    output_kind: str = "learned"
    input_units: str = "unit"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attr, allowed in (("output_kind", OUTPUT_KINDS), ("input_units", INPUT_UNITS)):
            value = getattr(cls, attr)
            if isinstance(value, str) and value not in allowed:
                raise TypeError(f"{cls.__qualname__}.{attr} = {value!r}; it must be one of "
                                f"{', '.join(map(repr, allowed))}")
