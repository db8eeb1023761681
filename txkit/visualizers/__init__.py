"""Visualizers. The contract is in ``txkit.visualizers.base``."""
