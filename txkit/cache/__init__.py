"""Caches shared by every run on a machine, under one cache directory (:func:`cache_root`).

- ``images``: decoded, resized input images of file-backed splits, written once into memory-mapped ``.npy``
  files (``ROOT/images``).
"""

from txkit.cache.images import CacheSettings, ImageStore, cache_root, clear_caches, list_caches, open_images

__all__ = ["CacheSettings", "ImageStore", "cache_root", "clear_caches", "list_caches", "open_images"]
