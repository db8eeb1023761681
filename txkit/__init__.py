"""txkit: transfer learning for grayscale medical images with PyTorch."""

from txkit.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
