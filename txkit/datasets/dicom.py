"""DICOM input: one single-frame image per file, read with pydicom in modality units (HU for CT).

Rules (docs/training.md, "DICOM"):

* A file is DICOM when its suffix is ``.dcm`` (any case), or when it has no suffix and bytes 128-131 are ``DICM``
  (the 128-byte preamble of DICOM Part 10). A ``.dcm`` file without the ``DICM`` preamble is still read when
  pydicom can parse it (some old files have no file meta header) and it holds pixel data.
* Values: the stored pixels go through the modality LUT (``pydicom.pixels.apply_modality_lut``: Rescale Slope /
  Intercept or a Modality LUT Sequence), so CT comes out in Hounsfield units.
* MONOCHROME1 (low values displayed white) is inverted into the MONOCHROME2 convention *in the stored range*:
  ``stored' = smin + smax - stored``, with [smin, smax] the range that Bits Stored and Pixel Representation allow
  (0..2**bits-1 unsigned, -2**(bits-1)..2**(bits-1)-1 signed), before the modality LUT. The values then no longer
  are modality units, so ``unit`` is the bit depth, not "HU"; a header window is mirrored the same way
  (:func:`display_window`).
* RGB / YBR images (as pydicom decodes them, to RGB) become ITU-R 601 luminance, like colour PNGs.
* Refused in one line naming the file: multi-frame images (Number of Frames > 1; split them into one file per
  frame), PALETTE COLOR, a file without pixel data, a compressed transfer syntax that no installed decoder reads
  (the message names the package to install), a truncated or corrupt file, a file that is not DICOM.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from txkit.errors import DataError

DICOM_SUFFIXES = {".dcm"}
#: Fixed window for CT in HU without a header window: the full 12-bit HU range (air -1024 to dense bone 3071).
CT_RANGE = (-1024.0, 3071.0)

# What to install per compressed transfer syntax (pydicom names the plugins; this names the pip packages).
_JPEG_LS = "pip install pylibjpeg pylibjpeg-libjpeg (or pyjpegls)"
_LIBJPEG = "pip install pylibjpeg pylibjpeg-libjpeg"
_OPENJPEG = "pip install pylibjpeg pylibjpeg-openjpeg"
DECODERS = {
    "1.2.840.10008.1.2.4.50": "pip install pillow (or pylibjpeg pylibjpeg-libjpeg)",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": _LIBJPEG,  # JPEG extended (12-bit): Pillow cannot
    "1.2.840.10008.1.2.4.57": _LIBJPEG,  # JPEG lossless
    "1.2.840.10008.1.2.4.70": _LIBJPEG,  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": _JPEG_LS,
    "1.2.840.10008.1.2.4.81": _JPEG_LS,
    "1.2.840.10008.1.2.4.90": "pip install pylibjpeg pylibjpeg-openjpeg (or pillow built with OpenJPEG)",
    "1.2.840.10008.1.2.4.91": "pip install pylibjpeg pylibjpeg-openjpeg (or pillow built with OpenJPEG)",
    "1.2.840.10008.1.2.4.201": _OPENJPEG,  # HTJ2K
    "1.2.840.10008.1.2.4.202": _OPENJPEG,
    "1.2.840.10008.1.2.4.203": _OPENJPEG,
    "1.2.840.10008.1.2.5": "pip install pylibjpeg pylibjpeg-rle",  # RLE (pydicom has its own decoder too)
}


def is_dicom(path: str | Path) -> bool:
    """``.dcm`` suffix, or no suffix and the ``DICM`` magic after the 128-byte preamble (reads 132 bytes)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _modality_lut():
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    return apply_modality_lut


def _first(value):
    """First value of a possibly multi-valued element, as float (None when absent or empty)."""
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
            if len(value) == 0:
                return None
            value = value[0]
        return float(value)
    except (TypeError, ValueError):
        return None


def stored_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def read_dicom(path: str | Path) -> tuple[np.ndarray, dict]:
    """``(values, info)``: float32 (H, W) values after the modality LUT (MONOCHROME1 inverted), and the header facts.

    ``info``: ``format`` ("dicom"), ``modality``, ``photometric``, ``bits_stored``, ``signed``, ``unit`` ("HU" for
    CT with a rescale and MONOCHROME2, else ``f"{bits}-bit"``), ``window_center`` / ``window_width`` (first value,
    None when absent) and ``range`` (the stored range after the modality LUT and the inversion, low to high).
    Raises :class:`FileNotFoundError` for a missing file and :class:`DataError` (one line, naming the file) otherwise.
    """
    path = Path(path)
    ds = _dataset(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(f"{path}: DICOM file without pixel data (a non-image object such as a report, "
                        f"plan or structure set, or a file cut short or stripped of its pixels); remove it from the "
                        f"image folder or list")
    _check_layout(path, ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as exc:
        raise DataError(_pixel_error(path, ds, exc)) from None
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    info = _facts(path, ds, colour=pixels.ndim == 3, itemsize=pixels.dtype.itemsize)
    bits = info["bits_stored"]

    if pixels.ndim == 3:  # colour, decoded to RGB by pydicom
        if pixels.shape[-1] != 3:
            raise DataError(f"{path}: DICOM pixel array of shape {pixels.shape} is not one grey or RGB image")
        rgb = pixels.astype(np.float64)
        values = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
        return values.astype(np.float32), info
    if pixels.ndim != 2:
        raise DataError(f"{path}: DICOM pixel array of shape {pixels.shape} is not one 2-D image")

    smin, smax = stored_range(bits, info["signed"])
    if info["photometric"] == "MONOCHROME1":
        pixels = (smin + smax) - pixels.astype(np.int64)
    try:
        values = np.asarray(_modality_lut()(pixels, ds), dtype=np.float64)
    except Exception as exc:
        raise DataError(f"{path}: cannot apply the DICOM modality LUT ({_short(exc)}); fix the rescale tags") from None
    if not np.isfinite(values).all():
        raise DataError(f"{path}: has NaN or infinite pixel values; replace the image data")
    return values.astype(np.float32), info


def read_header(path: str | Path) -> dict:
    """The ``info`` of :func:`read_dicom` from the header alone (pixel data neither read nor decoded), for choosing
    an intensity rule cheaply; a file whose header does not parse is read in full, so its error is the same."""
    import pydicom

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        _check_layout(path, ds)
        colour = int(ds.get("SamplesPerPixel") or 1) == 3
        return _facts(path, ds, colour=colour, itemsize=int(ds.get("BitsAllocated") or 16) // 8)
    except FileNotFoundError:
        raise
    except Exception:
        return read_dicom(path)[1]


def _dataset(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about odd VRs; txkit reports what it cannot read
            try:
                return pydicom.dcmread(path)
            except InvalidDicomError:
                return _forced(path)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many types on corrupt headers
        raise DataError(f"{path}: corrupt or truncated DICOM header ({_short(exc)}); replace the file") from None


def _check_layout(path: Path, ds) -> None:
    frames = int(_first(ds.get("NumberOfFrames")) or 1)
    if frames > 1:
        raise DataError(f"{path}: multi-frame DICOM ({frames} frames); txkit reads one image per file: split it "
                        f"into single-frame files (e.g. one per slice)")
    if _photometric(ds) == "PALETTE COLOR":
        raise DataError(f"{path}: PALETTE COLOR DICOM is not supported; convert it to MONOCHROME2 or RGB")


def _photometric(ds) -> str:
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()


def _facts(path: Path, ds, colour: bool, itemsize: int) -> dict:
    """The header facts of ``info`` (see :func:`read_dicom`), the unit and the stored range included."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8 * itemsize)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    modality = str(ds.get("Modality") or "").strip().upper() or None
    photometric = _photometric(ds)
    info = {"format": "dicom", "modality": modality, "photometric": photometric, "bits_stored": bits,
            "signed": signed, "window_center": _first(ds.get("WindowCenter")),
            "window_width": _first(ds.get("WindowWidth"))}
    if colour:
        info.update(unit=f"{bits}-bit", range=(0.0, float(2 ** bits - 1)), window_center=None, window_width=None)
        return info
    smin, smax = stored_range(bits, signed)
    try:
        ends = np.asarray(_modality_lut()(np.array([smin, smax], dtype=np.int64), ds), dtype=np.float64)
    except Exception as exc:
        raise DataError(f"{path}: cannot apply the DICOM modality LUT ({_short(exc)}); fix the rescale tags") from None
    inverted = photometric == "MONOCHROME1"
    rescaled = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    info["unit"] = "HU" if modality == "CT" and rescaled and not inverted else f"{bits}-bit"
    info["range"] = (float(ends.min()), float(ends.max()))
    return info


def _forced(path: Path):
    """Parse a ``.dcm`` without the DICM preamble (old files); anything without image tags is not DICOM."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        ok = "Rows" in ds and "Columns" in ds and ("PixelData" in ds or "FloatPixelData" in ds)
    except Exception:
        ok = False
    if not ok:
        raise DataError(f"{path}: not a DICOM file (no 'DICM' header and no DICOM image elements) despite its "
                        f"suffix; replace the file or give it its real suffix")
    return ds


def _pixel_error(path: Path, ds, exc: Exception) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    text = str(exc)
    name = getattr(syntax, "name", str(syntax)) if syntax else "an unknown transfer syntax"
    compressed = bool(syntax) and getattr(syntax, "is_compressed", False)
    if compressed and "missing dependencies" in text:
        advice = DECODERS.get(str(syntax), "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
        return f"{path}: compressed as '{name}' and no decoder for it is installed; install one: {advice}"
    if compressed and ("missing dependencies" in text or "not support" in text or "plugin" in text.lower()
                       or "decod" in text.lower()):
        advice = DECODERS.get(str(syntax), "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
        return (f"{path}: compressed as '{name}' and no installed decoder can read it ({_short(exc)}); "
                f"install one: {advice}")
    sizes = re.search(r"\((\d+) vs (\d+) bytes\)", text)
    if sizes:
        return f"{path}: truncated DICOM pixel data ({sizes[1]} of {sizes[2]} bytes); replace the file"
    if "less than expected" in text or "truncat" in text.lower() or isinstance(exc, EOFError):
        return f"{path}: truncated DICOM pixel data ({_short(exc)}); replace the file"
    return f"{path}: unreadable DICOM pixel data ({_short(exc)}); replace the file"


def _short(exc: Exception, limit: int = 160) -> str:
    """First line of an exception message, shortened (pydicom's messages run over several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(exc).__name__
    text = text.replace("Unable to decode as exceptions were raised by all available plugins:", "").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def display_window(info: dict) -> tuple[float, float] | None:
    """The header's VOI window as (low, high) in the values :func:`read_dicom` returns, or None.

    DICOM's LINEAR window (PS3.3 C.11.2.1.2): x <= c - 0.5 - (w-1)/2 is black, x > c - 0.5 + (w-1)/2 is white.
    For MONOCHROME1 the centre is mirrored like the values (c' = lo + hi - c over the modality range), which equals
    windowing the original values and inverting the display.
    """
    c, w = info.get("window_center"), info.get("window_width")
    if c is None or w is None or w < 1:
        return None
    if info.get("photometric") == "MONOCHROME1":
        lo, hi = info["range"]
        c = lo + hi - c
    return c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2


def display_range(info: dict) -> tuple[float, float]:
    """The default DICOM display rule as (low, high) in the values :func:`read_dicom` returns (docs/training.md):
    the header window, else CT's fixed HU range, else the stored range after the modality LUT."""
    window = display_window(info)
    if window is not None:
        low, high = window
    elif info.get("unit") == "HU":
        low, high = CT_RANGE
    else:
        low, high = info["range"]
    return (low, high) if high > low else (low, low + 1.0)


def dicom_to_uint8(values: np.ndarray, info: dict) -> np.ndarray:
    """:func:`display_range`, linear, clipped, rounded to 8 bits (what ``Split.image`` gives for a DICOM)."""
    low, high = display_range(info)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)
