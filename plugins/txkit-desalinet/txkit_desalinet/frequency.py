"""Frequency response of a layer (Suzuki et al. 2018, Section 7.2, Eqs. 6-8; methods.md §5).

    G(omega) = sum over theta in [0, pi) of || psi_dagger(psi(1(omega, theta))) ||^2

1(omega, theta) is a cosine grating of omega cycles per image at orientation theta with unit Frobenius
norm: the real part of the inverse FFT of the Hermitian pair (omega, theta), (omega, theta + pi), written
directly as a cosine so that every angle is exact, not rounded to a frequency bin. psi is the network up
to the layer, psi_dagger its DeSaliNet reversal from the layer's whole activation.

The grating is fed around the network's neutral gray (the mean its input normalisation subtracts), so
the backbone sees a zero-mean grating as in the paper's mean-subtracted input.

Python API::

    from txkit_desalinet.frequency import frequency_response, write_frequency_responses
    curve = frequency_response(net, layer="backbone.layer3", size=64)
    write_frequency_responses([("run A", curve_a), ("run B", curve_b)], "out/")   # CSV + PNG
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from txkit import ReportVisualizer, default_layer, resolve_layer
from txkit_desalinet.options import DEFAULT_THETAS
from txkit_desalinet.reversal import reconstruct

DEFAULT_SIZE = 64
BATCH = 32


@dataclass
class FrequencyResponse:
    omega: np.ndarray        # cycles per image, 0 .. size // 2
    gain: np.ndarray         # G(omega), raw
    normalised: np.ndarray   # G scaled to [0, 1]
    smoothed: np.ndarray     # normalised, second-order Savitzky-Golay smoothed
    layer: str
    size: int


def grating(size: int, omega: float, theta: float) -> torch.Tensor:
    """1(omega, theta): cos(2 pi omega (x cos theta + y sin theta) / size), unit Frobenius norm."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    wave = torch.cos(2 * math.pi * omega * (x * math.cos(theta) + y * math.sin(theta)) / size)
    return (wave / wave.norm()).float()


def neutral_level(net) -> float:
    """The gray level the network's input normalisation maps to zero (0 for a plain module)."""
    mean = getattr(getattr(net, "pre", None), "mean", None)
    return float(mean.mean()) if isinstance(mean, torch.Tensor) else 0.0


def gains(net, omegas: Sequence[float], thetas: int, size: int, layer: str) -> np.ndarray:
    """Raw G for each omega."""
    pairs = [(w, math.pi * k / thetas) for w in omegas for k in range(thetas)]
    level = neutral_level(net)
    energy = []
    for start in range(0, len(pairs), BATCH):
        batch = torch.stack([grating(size, w, t) for w, t in pairs[start:start + BATCH]])[:, None] + level
        raw = reconstruct(net, batch, rule="desalinet", layer=layer, channel=None, seed="activation")
        energy.append(raw.double().pow(2).flatten(1).sum(dim=1))
    return torch.cat(energy).view(len(omegas), thetas).sum(dim=1).numpy()


def smooth(values: np.ndarray, window: int = 9) -> np.ndarray:
    """Second-order Savitzky-Golay filter with the largest odd window up to ``window`` the data allow."""
    from scipy.signal import savgol_filter

    window = min(window, len(values) if len(values) % 2 else len(values) - 1)
    return savgol_filter(values, window, 2) if window > 2 else values.copy()


def scale01(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def frequency_response(net, layer: str | None = None, size: int = DEFAULT_SIZE, thetas: int = DEFAULT_THETAS,
                       omegas: Sequence[float] | None = None, window: int = 9) -> FrequencyResponse:
    """G(omega) of ``layer`` (default: :func:`default_layer`) for gratings of ``size`` x ``size``."""
    omega = np.asarray(omegas if omegas is not None else np.arange(size // 2 + 1), dtype=np.float64)
    probe = torch.full((1, 1, size, size), neutral_level(net))
    path = resolve_layer(net, layer) if layer else default_layer(net, probe)
    gain = gains(net, omega.tolist(), thetas, size, path)
    normalised = scale01(gain)
    return FrequencyResponse(omega, gain, normalised, smooth(normalised, window), path, size)


LINE_STYLES = [":", "--", "-", "-.", (0, (3, 1, 1, 1, 1, 1))]


def write_frequency_responses(curves: Sequence[tuple[str, FrequencyResponse]], out_dir: str | Path,
                              stem: str = "frequency_response") -> list[Path]:
    """One CSV (a row per run and omega) and one PNG with every run on one plot (Suzuki et al., Fig. 10)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "layer", "size", "omega", "gain", "normalised", "smoothed"])
        for label, c in curves:
            for row in zip(c.omega, c.gain, c.normalised, c.smoothed):
                writer.writerow([label, c.layer, c.size, *(f"{v:.6g}" for v in row)])
    _plot(curves, png_path)
    return [csv_path, png_path]


def _plot(curves: Sequence[tuple[str, FrequencyResponse]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for index, (label, c) in enumerate(curves):
        ax.plot(c.omega, c.smoothed, linestyle=LINE_STYLES[index % len(LINE_STYLES)], label=f"{label} ({c.layer})")
    ax.set_xlabel("ω (cycles per image)")
    ax.set_ylabel("G(ω), normalised and smoothed")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


class FrequencyResponseReport(ReportVisualizer):
    """Report visualizer: ``write`` makes the CSV and PNG for one or more (label, net) pairs."""

    name = "frequency-response"

    def __init__(self, thetas: int = DEFAULT_THETAS, size: int | None = None):
        self.thetas, self.size = int(thetas), size

    def write(self, nets, out_dir, layer: str | None = None, image_size: int | None = None) -> list[Path]:
        size = int(self.size or image_size or DEFAULT_SIZE)
        curves = [(label, frequency_response(net, layer, size, self.thetas)) for label, net in nets]
        return write_frequency_responses(curves, out_dir)


def frequency_response_visualizer(thetas: int = DEFAULT_THETAS, size: int | None = None,
                                  **_) -> FrequencyResponseReport:
    return FrequencyResponseReport(thetas, size)
