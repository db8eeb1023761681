"""synthetic-dld: procedurally generated CT-like texture patches of diffuse lung disease.

Seven classes after the DLD patterns of Suzuki et al.: consolidation, ground-glass opacity, honeycombing,
reticular opacity, emphysema, nodular opacity and normal lung. Each patch is drawn in Hounsfield-like units
(air -1000, lung about -850, soft tissue about 0), passed through blur and correlated CT noise, then shown in
a lung window jittered per image. Lesions cover only part of a patch and their strength varies, so some
classes overlap on purpose (ground-glass vs normal, reticular vs honeycombing, emphysema vs normal).

Everything is vectorised over a batch of images of one class, in float32; lengths are given for a 64-pixel
patch and scale with ``size``, so a larger patch shows the same field of view at a higher resolution.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import scipy.fft
from pydantic import field_validator
from scipy.special import ndtri

from txkit.datasets.base import SPLITS, Split, TxDataset
from txkit.errors import DataError
from txkit.options import Field, Options, validate_options

NAME = "synthetic-dld"
CLASSES = ["consolidation", "ground-glass", "honeycombing", "reticular", "emphysema", "nodular", "normal"]
DEFAULT_SIZES = {"train": 80, "val": 30, "test": 40}

REFERENCE_SIZE = 64
WINDOW_LEVEL, WINDOW_WIDTH = -600.0, 1500.0
F32 = np.float32


# ---------------------------------------------------------------------------------------------------- helpers

def _uniform(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """One value per image, shaped (n, 1, 1) to broadcast over pixels."""
    return rng.uniform(low, high, size=(n, 1, 1)).astype(F32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in the input's precision (scipy's expit is several times slower on float32)."""
    return F32(0.5) + F32(0.5) * np.tanh(F32(0.5) * x)


def _gaussian_transfer(size: int, sigma, anisotropy=1.0, angle=0.0) -> np.ndarray:
    """Half-spectrum (rfft2 layout) of a Gaussian kernel ``sigma`` pixels wide, optionally stretched and rotated."""
    ky = np.fft.fftfreq(size).astype(F32)[:, None]
    kx = np.fft.rfftfreq(size).astype(F32)[None, :]
    if np.all(np.asarray(anisotropy) == 1.0):
        squared = kx ** 2 + ky ** 2
    else:
        along = kx * np.cos(angle) + ky * np.sin(angle)
        across = -kx * np.sin(angle) + ky * np.cos(angle)
        squared = along ** 2 + (across * anisotropy) ** 2
    return np.exp(F32(-2.0 * np.pi ** 2) * sigma ** 2 * squared)


def _field_std(transfer: np.ndarray, size: int) -> np.ndarray:
    """Standard deviation of an orthonormal irfft2 of unit complex white noise shaped by ``transfer``.

    The zero-frequency term is left out because the fields are made exactly zero-mean.
    """
    power = transfer ** 2
    full = (2.0 * power.sum(axis=(-2, -1)) - power[..., 0].sum(axis=-1) - power[..., -1].sum(axis=-1)
            - power[..., 0, 0])
    return np.sqrt(2.0 * full / size ** 2)[..., None, None]


def _noise_spectrum(rng: np.random.Generator, n: int, size: int, transfer: np.ndarray) -> np.ndarray:
    """Half-spectrum of stationary Gaussian fields with zero mean, unit std and power spectrum ``transfer``**2.

    The noise is drawn straight in the frequency domain, which saves a forward FFT, and only where some
    image's transfer is not negligible, which saves most random numbers for smooth fields.
    """
    half = size // 2 + 1
    transfer = transfer / _field_std(transfer, size).astype(F32)
    support = transfer.reshape(-1, size, half).max(axis=0) > 1e-3
    reach = np.maximum(np.abs(np.fft.fftfreq(size))[:, None], np.fft.rfftfreq(size)[None, :])[support].max(initial=0.0)
    band = min(int(round(reach * size)) + 1, half)  # frequency indices per axis that matter
    spectrum = np.zeros((n, size, half), dtype=np.complex64)
    for rows in (slice(0, band), slice(size - band + 1, size)):  # positive, then negative row frequencies
        shape = (n, len(range(size)[rows]), band, 2)
        white = rng.standard_normal(shape, dtype=F32).view(np.complex64)[..., 0]
        spectrum[:, rows, :band] = white * transfer[..., rows, :band]
    spectrum[:, 0, 0] = 0.0  # exact zero mean, so thresholds give the intended coverage
    return spectrum


def _coloured_noise(rng: np.random.Generator, n: int, size: int, transfer: np.ndarray) -> np.ndarray:
    """Stationary Gaussian fields with zero mean, unit standard deviation and power spectrum ``transfer``**2."""
    return scipy.fft.irfft2(_noise_spectrum(rng, n, size, transfer), s=(size, size), norm="ortho")


def _random_field(rng: np.random.Generator, n: int, size: int, scale, anisotropy=1.0) -> np.ndarray:
    """Smooth random fields (zero mean, unit std) with correlation length ``scale`` pixels.

    ``anisotropy`` > 1 shortens the correlation across a random direction, giving an oriented texture.
    """
    angle = _uniform(rng, n, 0.0, np.pi)
    return _coloured_noise(rng, n, size, _gaussian_transfer(size, scale, anisotropy, angle))


def _region_mask(rng: np.random.Generator, n: int, size: int, coverage: np.ndarray,
                 scale: float, softness: float = 0.35) -> np.ndarray:
    """Soft blobs of value ~1 covering about ``coverage`` of each patch; used to place a lesion in normal lung."""
    threshold = ndtri(1.0 - np.clip(coverage, 0.01, 0.995)).astype(F32)
    return _sigmoid((_random_field(rng, n, size, scale) - threshold) / F32(softness))


def _contour_lines(field: np.ndarray, half_width) -> np.ndarray:
    """Opacity of curves along the zero level of ``field``, about ``half_width`` pixels wide everywhere."""
    grad_y, grad_x = np.gradient(field, axis=(1, 2))
    slope_squared = grad_y * grad_y + grad_x * grad_x
    # Near saddle points the slope vanishes and the lines would swell into blobs.
    floor = F32(0.25) * slope_squared.mean(axis=(1, 2), keepdims=True)
    distance_squared = field * field / np.maximum(slope_squared, floor)
    return np.exp(F32(-0.5) * distance_squared / (half_width * half_width))


def _dots(rng: np.random.Generator, n: int, size: int, count: tuple[float, float], sigma) -> np.ndarray:
    """Opacity of round blobs at random sub-pixel positions, ``count`` per 64x64 area, radius ~ ``sigma``.

    Each blob is an outer product of two 1-D Gaussians, so all of them cost one batched matrix product.
    """
    area = (size / REFERENCE_SIZE) ** 2
    low, high = round(count[0] * area), round(count[1] * area)
    most = max(high, 1)
    present = np.arange(most) < rng.integers(low, high + 1, size=(n, 1))
    amplitude = (rng.uniform(0.7, 1.1, size=(n, most, 1)) * present[..., None]).astype(F32)
    rows, cols = rng.uniform(-2.0, size + 2.0, size=(2, n, most, 1)).astype(F32)
    width = sigma * rng.uniform(0.75, 1.25, size=(n, most, 1)).astype(F32)
    axis = np.arange(size, dtype=F32)
    row_profile = np.exp(F32(-0.5) * ((axis - rows) / width) ** 2) * amplitude
    col_profile = np.exp(F32(-0.5) * ((axis - cols) / width) ** 2)
    blobs = np.matmul(row_profile.transpose(0, 2, 1), col_profile)
    return np.clip(F32(1.4) * blobs, 0.0, 1.0)


def _paint(background: np.ndarray, opacity: np.ndarray, value) -> np.ndarray:
    return background + opacity * (value - background)


def _cell_walls(rng: np.random.Generator, n: int, size: int, cell: np.ndarray, warp: float) -> np.ndarray:
    """Distance in pixels from each pixel to the nearest wall of a random cellular (Voronoi) tessellation.

    Worley noise on a jittered grid: the wall distance is half the gap between the distances to the
    nearest and the second-nearest cell centre. Coordinates are rotated per image and bent by a smooth
    displacement so the walls curve.
    """
    table = 32  # cells per side; a rotated, warped patch spans fewer than table - 4 cells
    s = size / REFERENCE_SIZE
    centres = np.empty(n * table * table, dtype=np.complex64)  # (u, v) within each cell as real, imag
    # Centres kept 0.2 cell from the edges let a 2x2 search find both nearest centres near every wall.
    centres.real, centres.imag = rng.uniform(0.2, 0.8, size=(2, n * table * table))
    rows, cols = np.mgrid[0:size, 0:size].astype(F32) - F32(size / 2)
    rows = rows + F32(warp * s) * _random_field(rng, n, size, 6.0 * s)
    cols = cols + F32(warp * s) * _random_field(rng, n, size, 6.0 * s)
    angle = _uniform(rng, n, 0.0, np.pi / 2)
    u = (np.cos(angle) * cols - np.sin(angle) * rows) / cell + F32(table / 2)
    v = (np.sin(angle) * cols + np.cos(angle) * rows) / cell + F32(table / 2)
    # The 2x2 block of cells whose centres lie closest: the pixel's own cell and its nearer neighbours.
    # Clipping only guards the table bounds; a patch never reaches its edge.
    block_u = np.clip(np.floor(u - F32(0.5)), 0, table - 2)
    block_v = np.clip(np.floor(v - F32(0.5)), 0, table - 2)
    u -= block_u
    v -= block_v
    image_start = (np.arange(n, dtype=np.intp) * table * table)[:, None, None]
    block = image_start + (block_u * table + block_v).astype(np.intp)
    nearest, second = (np.full(u.shape, np.inf, dtype=F32) for _ in range(2))
    gap_u, gap_v = np.empty_like(u), np.empty_like(u)
    # In place on squared distances: this loop is the costliest step of the generator.
    for du in (0, 1):
        for dv in (0, 1):
            centre = centres[du * table + dv:][block]
            np.subtract(u, centre.real, out=gap_u)
            gap_u -= du
            np.square(gap_u, out=gap_u)
            np.subtract(v, centre.imag, out=gap_v)
            gap_v -= dv
            np.square(gap_v, out=gap_v)
            gap_u += gap_v
            np.maximum(nearest, gap_u, out=gap_v)
            np.minimum(second, gap_v, out=second)
            np.minimum(nearest, gap_u, out=nearest)
    return F32(0.5) * (np.sqrt(second) - np.sqrt(nearest)) * cell


# ---------------------------------------------------------------------------------------------- lung layers

def _parenchyma(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Aerated lung: about -850 HU with a gravity-like density gradient (its mottle comes with the scan noise)."""
    ramp = np.linspace(-1.0, 1.0, size, dtype=F32)[None, :, None] * _uniform(rng, n, -20.0, 20.0)
    return _uniform(rng, n, -885.0, -815.0) + ramp


def _vessels(rng: np.random.Generator, n: int, size: int, cross_sections: tuple[float, float]) -> np.ndarray:
    """Vessel opacity: a few curved branches that taper as they fade out, plus round cross-sections."""
    s = size / REFERENCE_SIZE
    course = _random_field(rng, n, size, _uniform(rng, n, 8.0, 14.0) * s, _uniform(rng, n, 1.0, 2.0))
    extent = _sigmoid(F32(2.5) * (_random_field(rng, n, size, 10.0 * s) + _uniform(rng, n, -0.6, 0.6)))
    calibre = _uniform(rng, n, 0.5, 1.1) * F32(s) * (F32(0.35) + F32(0.65) * extent)
    branches = _contour_lines(course, calibre) * extent
    ends = _dots(rng, n, size, cross_sections, _uniform(rng, n, 0.8, 1.4) * F32(s))
    return np.maximum(branches, ends)


def _lung(rng: np.random.Generator, n: int, size: int, background: np.ndarray | None = None,
          cross_sections: tuple[float, float] = (1, 5)) -> np.ndarray:
    """Lung with vessels painted over ``background`` (plain parenchyma by default)."""
    if background is None:
        background = _parenchyma(rng, n, size)
    return _paint(background, _vessels(rng, n, size, cross_sections), _uniform(rng, n, -80.0, 40.0))


def _lesion_region(rng: np.random.Generator, n: int, size: int, coverage: tuple[float, float],
                   scale: float = 14.0, softness: float = 0.35) -> np.ndarray:
    """Where a lesion shows within a patch; the rest stays normal lung, which makes small lesions hard."""
    return _region_mask(rng, n, size, _uniform(rng, n, *coverage), scale * size / REFERENCE_SIZE, softness)


# -------------------------------------------------------------------------------------------- class patterns

def _consolidation(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Dense, near soft-tissue opacity hiding the vessels, crossed by dark branching air bronchograms."""
    s = size / REFERENCE_SIZE
    airway = _random_field(rng, n, size, _uniform(rng, n, 8.0, 14.0) * s, _uniform(rng, n, 1.2, 2.0))
    present = _sigmoid(F32(3.0) * (_random_field(rng, n, size, 10.0 * s) + _uniform(rng, n, -1.0, 0.5)))
    bronchograms = _contour_lines(airway, _uniform(rng, n, 0.7, 1.5) * F32(s)) * present
    tissue = _paint(_uniform(rng, n, -250.0, 40.0), bronchograms, _uniform(rng, n, -950.0, -750.0))
    region = _lesion_region(rng, n, size, coverage=(0.45, 0.98), scale=12.0)
    return _paint(_lung(rng, n, size), region, tissue)


def _ground_glass(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Hazy rise in lung attenuation with soft edges; vessels stay visible through it."""
    haze = _uniform(rng, n, 100.0, 450.0)
    region = _lesion_region(rng, n, size, coverage=(0.5, 1.0), softness=0.7)
    return _lung(rng, n, size, _parenchyma(rng, n, size) + haze * region)


def _honeycombing(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Clustered air-filled cysts sharing thick bright fibrous walls."""
    s = F32(size / REFERENCE_SIZE)
    to_wall = _cell_walls(rng, n, size, _uniform(rng, n, 6.0, 12.0) * s, warp=1.5)
    wall = _sigmoid((_uniform(rng, n, 0.4, 1.0) * s - to_wall) / (F32(0.2) * s))
    cysts = _paint(_uniform(rng, n, -1000.0, -950.0), wall, _uniform(rng, n, -250.0, 0.0))
    region = _lesion_region(rng, n, size, coverage=(0.5, 0.98))
    return _paint(_lung(rng, n, size), region, cysts)


def _reticular(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Fine irregular, partly broken net of thin lines over slightly denser lung."""
    s = F32(size / REFERENCE_SIZE)
    to_wall = _cell_walls(rng, n, size, _uniform(rng, n, 4.5, 9.0) * s, warp=2.5)
    intact = _sigmoid(F32(3.0) * (_random_field(rng, n, size, 4.0 * s) + F32(0.8)))
    lines = _sigmoid((_uniform(rng, n, 0.25, 0.7) * s - to_wall) / (F32(0.15) * s)) * intact
    region = _lesion_region(rng, n, size, coverage=(0.5, 0.98))
    lung = _lung(rng, n, size) + _uniform(rng, n, 40.0, 160.0) * region
    return _paint(lung, lines * region, _uniform(rng, n, -450.0, -200.0))


def _emphysema(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Scattered low-attenuation holes close to air density, without walls, among sparser vessels."""
    s = size / REFERENCE_SIZE
    holes = _region_mask(rng, n, size, _uniform(rng, n, 0.15, 0.5), _uniform(rng, n, 2.0, 4.5) * F32(s), 0.25)
    background = _paint(_parenchyma(rng, n, size), holes, _uniform(rng, n, -1000.0, -950.0))
    return _lung(rng, n, size, background, cross_sections=(0, 3))


def _nodular(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Many small well-defined bright nodules scattered over normal lung."""
    nodules = _dots(rng, n, size, (10, 32), _uniform(rng, n, 0.8, 1.5) * F32(size / REFERENCE_SIZE))
    return _paint(_lung(rng, n, size), nodules, _uniform(rng, n, -200.0, 40.0))


def _normal(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Aerated lung with faint vessels."""
    return _lung(rng, n, size)


PATTERNS = (_consolidation, _ground_glass, _honeycombing, _reticular, _emphysema, _nodular, _normal)


# ----------------------------------------------------------------------------------------------- acquisition

def _scan(rng: np.random.Generator, hu: np.ndarray) -> np.ndarray:
    """Scanner blur, tissue mottle, correlated CT noise and a jittered lung window, giving 8-bit images.

    Blur and both noises are applied in one pass through the frequency domain.
    """
    n, size = hu.shape[0], hu.shape[-1]
    s = F32(size / REFERENCE_SIZE)
    blur = _gaussian_transfer(size, _uniform(rng, n, 0.3, 0.9) * s)
    # Patchy density differences a few pixels across, plus reconstruction noise correlated over a pixel or two.
    mottle = _noise_spectrum(rng, n, size, _gaussian_transfer(size, _uniform(rng, n, 3.0, 10.0) * s))
    grain = _noise_spectrum(rng, n, size, _gaussian_transfer(size, _uniform(rng, n, 0.5, 1.0) * s))
    spectrum = (scipy.fft.rfft2(hu, norm="ortho") * blur
                + _uniform(rng, n, 8.0, 25.0) * mottle + _uniform(rng, n, 15.0, 45.0) * grain)
    noisy = scipy.fft.irfft2(spectrum, s=(size, size), norm="ortho")
    level = WINDOW_LEVEL + _uniform(rng, n, -40.0, 40.0)
    width = WINDOW_WIDTH * _uniform(rng, n, 0.9, 1.1)
    grey = (noisy - (level - width / 2)) / width * F32(255.0)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- generation

def _check_size(size: int) -> None:
    if size < 16 or size % 8:
        raise DataError(f"synthetic-dld: size must be a multiple of 8 and at least 16, got {size}")


def _split_sizes(per_class: dict | None) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES)
    for split_name, count in (per_class or {}).items():
        if split_name not in SPLITS:
            raise DataError(f"synthetic-dld: per_class has unknown split {split_name!r}; valid: {', '.join(SPLITS)}")
        if int(count) < 0:
            raise DataError(f"synthetic-dld: per_class[{split_name!r}] must be >= 0, got {count}")
        sizes[split_name] = int(count)
    return sizes


def _generate_split(seed_sequence: np.random.SeedSequence, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    class_seeds = seed_sequence.spawn(len(CLASSES) + 1)
    images = np.empty((len(CLASSES) * count, size, size), dtype=np.uint8)
    if count:
        for label, (pattern, class_seed) in enumerate(zip(PATTERNS, class_seeds)):
            rng = np.random.default_rng(class_seed)
            images[label * count:(label + 1) * count] = _scan(rng, pattern(rng, count, size))
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), count)
    order = np.random.default_rng(class_seeds[-1]).permutation(len(labels))
    return images[order], labels[order]


def generate(seed: int = 0, per_class: dict | None = None, size: int = 64) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images (N, size, size) uint8 and labels (N,) int64 for each split, shuffled and balanced across classes.

    ``per_class`` overrides the images per class of some splits, e.g. ``{"train": 200}``.
    """
    _check_size(size)
    sizes = _split_sizes(per_class)
    split_seeds = np.random.SeedSequence(seed).spawn(len(SPLITS))
    return {name: _generate_split(split_seed, sizes[name], size) for name, split_seed in zip(SPLITS, split_seeds)}


# ------------------------------------------------------------------------------------------------- factory

class SyntheticDldOptions(Options):
    """Options of ``synthetic-dld`` (``--data-option KEY=VALUE``)."""

    seed: int = Field(0, description="seed of the generator; the same seed gives the same images")
    size: int = Field(64, description="patch side in pixels, a multiple of 8 and at least 16 (64 is the "
                                      "reference field of view, larger patches show it at higher resolution)")
    per_class: Union[int, dict[str, int], None] = Field(
        None, description="images per class: one number for every split, or per split such as "
                          "{\"train\": 200} (from an experiment file); default train 80, val 30, test 40")

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value < 16 or value % 8:
            raise ValueError("must be a multiple of 8 and at least 16")
        return value

    @field_validator("per_class")
    @classmethod
    def _per_class(cls, value):
        counts = value if isinstance(value, dict) else {} if value is None else {"": value}
        for split_name, count in counts.items():
            if split_name and split_name not in SPLITS:
                raise ValueError(f"unknown split {split_name!r}; valid: {', '.join(SPLITS)}")
            if count < 0:
                raise ValueError("must be >= 0")
        return value


def _split(name: str, images: np.ndarray, labels: np.ndarray) -> Split:
    ids = [f"{NAME}/{name}/{i:06d}" for i in range(len(labels))]
    return Split(lambda i: images[i], labels, ids=ids)


def build(root=None, **options) -> TxDataset:
    """The synthetic-dld dataset, generated in memory; options: :class:`SyntheticDldOptions`."""
    if root is not None:
        raise DataError("synthetic-dld is generated in memory and takes no `data_root`")
    options = validate_options(f"dataset {NAME!r}", SyntheticDldOptions, options, DataError)
    seed, size, per_class = options["seed"], options["size"], options["per_class"]
    if per_class is not None and not isinstance(per_class, dict):
        per_class = dict.fromkeys(SPLITS, per_class)
    data = generate(seed=seed, per_class=per_class, size=size)
    return TxDataset(
        name=NAME,
        classes=list(CLASSES),
        splits={name: _split(name, *data[name]) for name in SPLITS},
        description="Procedural CT-like texture patches of 7 diffuse lung disease patterns (after Suzuki et al.)",
        info={"seed": seed, "size": size, "image_size": size,
              "per_class": {name: len(data[name][1]) // len(CLASSES) for name in SPLITS}},
    )
