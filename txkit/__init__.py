"""txkit: transfer learning for grayscale medical images with PyTorch.

The Python API (``txkit.train``, ``txkit.Run``, ``txkit.TrainConfig``, ...) is imported on first use, so
``import txkit`` stays light: it imports no torch.
"""

from txkit.hookspecs import hookimpl

__version__ = "0.1.0"

_API = {"train": "txkit.api", "resume": "txkit.api", "Run": "txkit.api", "run_experiment": "txkit.api",
        "report_experiment": "txkit.api", "list_entries": "txkit.api", "TrainConfig": "txkit.config",
        "WeightsSource": "txkit.config", "ConfigError": "txkit.config", "RunDir": "txkit.rundir"}
__all__ = ["hookimpl", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'txkit' has no attribute {name!r}")
