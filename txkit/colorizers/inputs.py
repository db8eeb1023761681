"""What a colorizer needs of the run's intensity rule (docs/training.md, "Intensity rules"): ``hu`` gives raw
Hounsfield units, which only a colorizer that expects HU takes (``input_units = "HU"``; the built-in ``window``
colorizer with ``input_is_unit`` false)."""

from __future__ import annotations

from txkit.datasets.intensity import IntensityRule

#: Colorizer options that make a colorizer take HU (``intensity`` hu sets them when they are not given).
HU_OPTIONS = {"window": {"input_is_unit": False}}


def colorizer_input_units(colorizer) -> str:
    """"HU" for a colorizer module that takes Hounsfield units, else "unit" (input in [0, 1])."""
    return getattr(colorizer, "input_units", "unit")


def check_config(cfg):
    """The run's config with its intensity rule checked against its colorizer (one line naming `intensity`).

    ``hu`` gives the network raw HU: only a colorizer that expects HU takes them. For the ``window`` colorizer
    ``hu`` sets ``input_is_unit`` false when it is not given (recorded in config.json); any other colorizer, or
    none, is refused. A colorizer set to expect HU is refused with any other rule.
    """
    rule = IntensityRule.parse(cfg.intensity)
    from txkit.errors import ConfigError

    if cfg.colorizer is None:
        if rule.name == "hu":
            raise ConfigError("`intensity` hu gives the network raw HU (about -1000 to 3000), which only a colorizer "
                              "that expects HU takes; with no `colorizer` the backbone would get them unscaled: use "
                              "`colorizer` window, or `intensity` dicom-voi or window:LEVEL:WIDTH")
        return cfg
    options = dict(cfg.colorizer_options)
    hu_options = HU_OPTIONS.get(cfg.colorizer, {})
    if rule.name == "hu" and hu_options and not any(k in options for k in hu_options):
        cfg = cfg.replace(colorizer_options={**options, **hu_options})
    from txkit.plugins import create

    units = colorizer_input_units(create("colorizer", cfg.colorizer, **cfg.colorizer_options))
    if rule.name == "hu" and units != "HU":
        told = f" with {', '.join(f'{k}={v}' for k, v in options.items())}" if options else ""
        raise ConfigError(f"`intensity` hu gives the network raw HU, which only a colorizer that expects HU takes "
                          f"(window); `colorizer` {cfg.colorizer}{told} expects input in [0, 1]: use `intensity` "
                          f"dicom-voi or window:LEVEL:WIDTH with it, or `colorizer` window")
    if rule.name != "hu" and units == "HU":
        told = ", ".join(f"{k}={v}" for k, v in cfg.colorizer_options.items())
        raise ConfigError(f"`colorizer` {cfg.colorizer} with {told} expects HU, but `intensity` {rule.text} gives "
                          f"values in [0, 1]; use `intensity` hu, or drop that colorizer option")
    return cfg


def network_warnings(cfg, rule: IntensityRule) -> list[str]:
    """Warnings about the rule and the colorizer together: the window colorizer on CT in HU without ``hu``."""
    if cfg.colorizer != "window" or rule.name == "hu" or not any(u == "HU" for u, _ in rule.units):
        return []
    if rule.name in ("auto", "dicom-voi") and not rule.windowed:
        return []  # CT without header windows is shown over -1024..3071 HU: the colorizer's mapping is exact
    return [f"the window colorizer maps its [0, 1] input back to HU over -1024..3071, which are the images' true HU "
            f"only for `intensity` auto or dicom-voi on CT without a header window; for its windows on true HU, "
            f"train with `intensity` hu (now {rule.text})"]
