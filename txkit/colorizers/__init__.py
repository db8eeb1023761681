"""Colorizers: gray-to-RGB modules in front of a backbone. Modules are in ``txkit.colorizers.modules``."""
