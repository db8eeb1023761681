"""Pictures from maps: the jet overlay of Sivaramakrishnan et al., the raw reconstruction of Suzuki et al.,
kernel and channel grids, PNG files and the comparison grid (matplotlib's object API, no pyplot state)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.3
DEFAULT_ALPHA = 0.6


def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 or float image as float in [0, 1]."""
    image = np.asarray(image)
    return image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else np.clip(image, 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image if image.dtype == np.uint8 else np.round(to_unit(image) * 255).astype(np.uint8)


def reconstruction_uint8(raw: np.ndarray) -> np.ndarray:
    """A raw reconstruction min-max normalised to [0, 255] (Suzuki et al. 7.1); constant maps become 0."""
    raw = np.asarray(raw, dtype=np.float64)
    span = raw.max() - raw.min()
    scaled = (raw - raw.min()) / span if span > 0 else np.zeros_like(raw)
    return np.round(scaled * 255).astype(np.uint8)


def jet(heat: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] to (H, W, 3) jet colours in [0, 1]."""
    from matplotlib import colormaps

    return colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3]


def jet_overlay(gray: np.ndarray, heat: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The heat map in jet over the grayscale input, (H, W, 3) uint8.

    Heat at or below ``threshold`` counts as black and is fully transparent; above it the jet colour of
    the heat value is blended with weight ``alpha`` (Sivaramakrishnan et al., Fig. 3).
    """
    base = np.repeat(to_unit(gray)[..., None], 3, axis=2)
    heat = to_unit(heat)
    if heat.shape != base.shape[:2]:
        raise ValueError(f"heat map {heat.shape} and image {base.shape[:2]} differ in size")
    shown = (heat > threshold)[..., None]
    blended = (1 - alpha) * base + alpha * jet(heat)
    return to_uint8(np.where(shown, blended, base))


def reconstruction_heat(maps: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Heat of signed reconstructions shown min-max (N, H, W): how far each pixel is from the background.

    Most pixels of a reconstruction are background, so the median of a displayed map is where zero went.
    The distance is blurred (sigma 1% of the image side, so scattered edge pixels become regions) and
    scaled so that its ``percentile`` maps to 1 (a few extreme pixels do not wash out the rest).
    """
    from scipy.ndimage import gaussian_filter

    maps = np.asarray(maps, dtype=np.float64)
    out = np.empty_like(maps)
    for i, image in enumerate(maps):
        distance = gaussian_filter(np.abs(image - np.median(image)), sigma=max(1.0, min(image.shape) / 100))
        top = np.percentile(distance, percentile)
        out[i] = np.clip(distance / top, 0.0, 1.0) if top > 0 else 0.0
    return out


def tile(maps: np.ndarray, columns: int | None = None, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """(K, h, w) or (K, h, w, 3) images in one grid with ``pad`` pixels of ``fill`` between them."""
    maps = np.asarray(maps)
    count = len(maps)
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    h, w = maps.shape[1:3]
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, *maps.shape[3:]), fill, dtype=np.float64)
    for index, image in enumerate(maps):
        r, c = divmod(index, columns)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = image
    return grid


def enlarge(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Repeat pixels (nearest neighbour) until the shorter side is at least ``min_side``."""
    factor = max(1, int(np.ceil(min_side / max(1, min(image.shape[:2])))))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a gray (H, W) or colour (H, W, 3) image, float in [0, 1] or uint8, as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def comparison_grid(path: str | Path, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[np.ndarray | None]]],
                    title: str = "") -> Path:
    """One figure: a column per run (``columns``), a row per (label, images); None leaves a cell empty."""
    from matplotlib.figure import Figure

    cell = 2.2
    fig = Figure(figsize=(cell * len(columns) + 0.6, cell * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if image is not None:
                ax.imshow(to_uint8(image), cmap="gray", vmin=0, vmax=255)
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# --- readable per-image outputs ------------------------------------------------------------------------
TITLE_FONT_PT = 8
TITLE_LINE_PX = 13
TITLE_PAD_PX = 4
WARNING_COLOUR = "#b00000"


def resize(image: np.ndarray, size: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """A gray (H, W) or colour (H, W, 3) image resized to ``size`` = (height, width): bilinear (``smooth``,
    for photographs and heat maps) or nearest (for grids, so each cell stays a block). Float in, float out;
    uint8 in, uint8 out."""
    from PIL import Image

    image = np.asarray(image)
    if image.shape[:2] == tuple(size):
        return image
    method = Image.BILINEAR if smooth else Image.NEAREST
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((size[1], size[0]), method))
    channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    out = [np.asarray(Image.fromarray(np.asarray(c, dtype=np.float32), mode="F").resize((size[1], size[0]), method))
           for c in channels]
    return np.clip(out[0] if image.ndim == 2 else np.stack(out, axis=-1), 0.0, 1.0).astype(np.float64)


def display_size(shape: tuple[int, int], min_side: int) -> tuple[int, int]:
    """(height, width) of ``shape`` scaled up (aspect kept) until the shorter side is at least ``min_side``."""
    h, w = shape
    factor = max(1.0, min_side / max(1, min(h, w)))
    return int(round(h * factor)), int(round(w * factor))


def wrap_title(lines: Sequence[str], width_px: int) -> list[str]:
    """Title lines wrapped at their `` · `` separators to fit ``width_px`` (about 6 px per character)."""
    limit = max(12, (width_px - 2 * TITLE_PAD_PX) // 6)
    out = []
    for line in lines:
        current = ""
        for part in line.split(" · "):
            candidate = f"{current} · {part}" if current else part
            if current and len(candidate) > limit:
                out.append(current)
                current = part
            else:
                current = candidate
        out.append(current)
    return [piece for line in out for piece in (textwrap.wrap(line, limit) or [""])]


def titled(image: np.ndarray, lines: Sequence[str], warning: str = "") -> np.ndarray:
    """``image`` (gray or colour, float or uint8) unchanged in size under a white band with the title
    ``lines`` (black) and a ``warning`` (red); (H + band, W, 3) uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picture = to_uint8(image)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    height, width = picture.shape[:2]
    text = [(line, "black") for line in wrap_title(lines, width)]
    text += [(line, WARNING_COLOUR) for line in wrap_title([warning], width)] if warning else []
    band = TITLE_PAD_PX * 2 + TITLE_LINE_PX * len(text)
    dpi = 100
    fig = Figure(figsize=(width / dpi, band / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    for index, (line, colour) in enumerate(text):
        y = 1 - (TITLE_PAD_PX + TITLE_LINE_PX * index) / band
        fig.text(TITLE_PAD_PX / width, y, line, fontsize=TITLE_FONT_PT, color=colour, va="top", ha="left")
    canvas.draw()
    header = np.asarray(canvas.buffer_rgba())[..., :3]
    strip = np.full((band, width, 3), 255, dtype=np.uint8)
    h, w = min(band, header.shape[0]), min(width, header.shape[1])
    strip[:h, :w] = header[:h, :w]
    return np.concatenate([strip, picture], axis=0)
