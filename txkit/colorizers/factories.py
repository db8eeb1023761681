"""Factories for the built-in colorizers (options may arrive as strings from --colorizer-option)."""

from __future__ import annotations

from txkit.colorizers import modules
from txkit.errors import TxkitError


def _no_options(name: str, options: dict) -> None:
    if options:
        raise TxkitError(f"colorizer {name!r} takes no options (got {', '.join(options)})")


def repeat(**options):
    _no_options("repeat", options)
    return modules.RepeatColorizer()


def conv1x1(**options):
    _no_options("conv1x1", options)
    return modules.Conv1x1Colorizer()


def deconv(**options):
    _no_options("deconv", options)
    return modules.DeconvColorizer()


def resizeconv(**options):
    _no_options("resizeconv", options)
    return modules.ResizeConvColorizer()


def pixelshuffle(**options):
    _no_options("pixelshuffle", options)
    return modules.PixelShuffleColorizer()


def coloru(**options):
    _no_options("coloru", options)
    return modules.ColorUColorizer()


def window(windows: str | tuple = "40:400,-600:1500,50:350", input_is_unit="true", **unknown):
    """``windows`` = three LEVEL:WIDTH pairs in Hounsfield units (default: soft tissue, lung, brain)."""
    if unknown:
        raise TxkitError(f"colorizer 'window': unknown option(s) {', '.join(unknown)}; valid: windows, input_is_unit")
    if isinstance(windows, str):
        try:
            windows = tuple(tuple(float(v) for v in pair.split(":")) for pair in windows.split(","))
        except ValueError:
            windows = ()
    if len(windows) != 3 or any(len(w) != 2 for w in windows):
        raise TxkitError("colorizer 'window': --colorizer-option windows=L:W,L:W,L:W (three level:width pairs in HU)")
    unit = input_is_unit if isinstance(input_is_unit, bool) else str(input_is_unit).lower() in ("1", "true", "yes")
    return modules.WindowColorizer(windows=windows, input_is_unit=unit)
