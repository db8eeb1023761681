"""Transfer strategies: which stages train, in which phases, with which learning rates."""

from txkit.strategies.base import Phase, Strategy

__all__ = ["Phase", "Strategy"]
