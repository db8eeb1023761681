"""Datasets: the public API for dataset plugins (import-light: numpy, no torch).

A dataset plugin imports only from here, :mod:`txkit.options`, :mod:`txkit.errors` and :mod:`txkit`:

* ``TxDataset``, ``Split``: what a dataset factory returns (the contract is in ``txkit.datasets.base``);
* ``load_gray(path)``: one image file as 8-bit gray (PNG, JPEG, TIFF, BMP, DICOM ...);
* from ``txkit.datasets.files``: ``require_dir(root, layout)`` (``--data-root`` as a folder, or a one-line
  error showing ``layout``), ``list_images(folder)``, ``load_image(path)`` (``load_gray`` with the advice
  of a dataset read from files), ``file_split(paths, labels, groups=None, *, ids=, studies=, transform=,
  transform_key=, metadata=)`` (the file-backed split: decoded once into the disk image cache, read by loader workers
  through the batch ring), ``group_split(n, groups, strata,
  seed, val, test)`` (seeded, patient-disjoint, class-proportional indices), ``drop_unreadable(paths,
  *columns)`` and ``readable(path)`` (for ``skip_bad_images``), ``as_bool(value)``.

The names are loaded on first use, so ``import txkit.datasets`` costs nothing until one is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Split": "txkit.datasets.base", "TxDataset": "txkit.datasets.base", "load_gray": "txkit.datasets.base",
    "require_dir": "txkit.datasets.files", "list_images": "txkit.datasets.files",
    "load_image": "txkit.datasets.files", "file_split": "txkit.datasets.files",
    "group_split": "txkit.datasets.files", "drop_unreadable": "txkit.datasets.files",
    "readable": "txkit.datasets.files", "as_bool": "txkit.datasets.files",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'txkit.datasets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
