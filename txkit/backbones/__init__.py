"""Backbones. The contract is in ``txkit.backbones.base`` (imported lazily: it needs torch)."""
