"""Pixel primitives on numpy arrays: the one resize and the one uint8 -> float32 scaling.

Every path that turns stored pixels into network input goes through these two functions (the intensity rules,
the image cache, the loader), so cached and uncached runs see the same values. The device twin of
:func:`as_float`, for uint8 batches that travel to a GPU as bytes, is :func:`txkit.training.runtime.to_input`.
"""

from __future__ import annotations

import numpy as np


def resize_gray(image: np.ndarray, size: int) -> np.ndarray:
    """An 8-bit image resized to (size, size); returned as it is when it already has that shape."""
    if image.shape == (size, size):
        return image
    from PIL import Image

    # Bicubic enlargement as in Suzuki et al. (32x32 ROIs enlarged to 224).
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def resize_rule() -> str:
    """The resize's identity, for cache keys: Pillow's bicubic kernel changes rarely, but it can."""
    import PIL

    return f"pil-bicubic-{PIL.__version__}"


def as_float(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The network input as float32: ``uint8`` / 255 (IEEE float32 division, the same values as torch's
    ``div_`` by a float32 255 on any device), anything else as float32.

    With ``out`` (a float32 array of the same shape) the result is written there. Without it, a uint8 image
    gives a new array and a float32 one is returned as it is. numpy, single-threaded: torch's threaded
    element-wise ops stall when the cores are busy (the model, other runs)."""
    if out is None:
        if pixels.dtype != np.uint8:
            return pixels.astype(np.float32, copy=False)
        out = np.empty(pixels.shape, dtype=np.float32)
    out[...] = pixels
    if pixels.dtype == np.uint8:
        np.divide(out, np.float32(255.0), out=out)
    return out
