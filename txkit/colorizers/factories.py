"""Factories for the built-in colorizers and their options (options may arrive as strings from
`colorizer_options`). torch is imported only when a colorizer is built, so the options can be listed cheaply."""

from __future__ import annotations

from typing import Union

from pydantic import ConfigDict, field_validator

from txkit.options import Field, Options

DEFAULT_WINDOWS = "40:400,-600:1500,50:350"


class WindowOptions(Options):
    """Options of the ``window`` colorizer (``--colorizer-option KEY=VALUE``)."""

    model_config = ConfigDict(validate_default=True)  # the default windows string is parsed too

    windows: Union[str, tuple] = Field(DEFAULT_WINDOWS, description="three LEVEL:WIDTH pairs in Hounsfield units, "
                                       "one per channel (soft tissue, lung, mediastinum)")
    input_is_unit: bool = Field(True, description="the input is in [0, 1] and is mapped to -1024..3071 HU first "
                                "(true HU only for CT shown over that range: intensity auto or dicom-voi without a "
                                "header window); false: the input is already in HU (intensity hu sets this)")

    @field_validator("windows")
    @classmethod
    def _windows(cls, value):
        if isinstance(value, str):
            try:
                value = tuple(tuple(float(v) for v in pair.split(":")) for pair in value.split(","))
            except ValueError:
                value = ()
        if len(value) != 3 or any(len(w) != 2 or not float(w[1]) > 0 for w in value):
            raise ValueError("must be three level:width pairs in HU with positive widths, e.g. "
                             "windows=40:400,-600:1500,50:350")
        return tuple(tuple(float(v) for v in w) for w in value)


def repeat():
    from txkit.colorizers import modules
    return modules.RepeatColorizer()


def conv1x1():
    from txkit.colorizers import modules
    return modules.Conv1x1Colorizer()


def deconv():
    from txkit.colorizers import modules
    return modules.DeconvColorizer()


def resizeconv():
    from txkit.colorizers import modules
    return modules.ResizeConvColorizer()


def pixelshuffle():
    from txkit.colorizers import modules
    return modules.PixelShuffleColorizer()


def coloru():
    from txkit.colorizers import modules
    return modules.ColorUColorizer()


def window(**options):
    """A fixed CT-window colorizer; options: :class:`WindowOptions`."""
    from txkit.colorizers import modules
    from txkit.options import validate_options

    options = validate_options("colorizer 'window'", WindowOptions, options)
    return modules.WindowColorizer(windows=options["windows"], input_is_unit=options["input_is_unit"])
