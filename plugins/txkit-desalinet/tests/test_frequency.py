"""Frequency response G(omega) (Suzuki et al. Eq. 8)."""

import csv
import math

import numpy as np
import torch
from PIL import Image
from torch import nn

from txkit_desalinet.frequency import frequency_response, grating, write_frequency_responses

torch.set_num_threads(2)


def blur_net(sigma=1.5, size=7):
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = torch.outer(g, g) / torch.outer(g, g).sum()
    conv = nn.Conv2d(1, 1, size, padding=size // 2, bias=False)
    conv.weight.data[:] = kernel
    return nn.Sequential(conv)


def test_gratings_have_unit_norm_and_the_asked_frequency():
    image = grating(32, 5, math.pi / 4)
    assert abs(float(image.norm()) - 1) < 1e-5
    spectrum = np.abs(np.fft.fft2(grating(32, 3, 0).numpy()))
    assert set(zip(*np.nonzero(spectrum > 1e-3))) == {(0, 3), (0, 29)}  # the Hermitian pair (3, 0), (3, pi)


def test_frequency_response_of_a_blur_falls_as_omega_rises():
    curve = frequency_response(blur_net(), size=32, thetas=6)
    assert curve.layer == "0" and len(curve.omega) == 17
    assert np.all(np.diff(curve.gain) < 0)
    assert curve.normalised[0] == 1 and curve.normalised[-1] == 0
    assert np.all(np.diff(curve.smoothed[:6]) < 0) and np.abs(curve.smoothed[8:]).max() < 0.05


def test_several_runs_share_one_csv_and_one_plot(tmp_path):
    curves = [(name, frequency_response(blur_net(sigma), size=16, thetas=2)) for name, sigma in
              [("narrow", 0.8), ("wide", 2.0)]]
    csv_path, png_path = write_frequency_responses(curves, tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["run"] for r in rows} == {"narrow", "wide"} and len(rows) == 2 * 9
    assert Image.open(png_path).size[0] > 300
    wide = [float(r["gain"]) for r in rows if r["run"] == "wide"]
    narrow = [float(r["gain"]) for r in rows if r["run"] == "narrow"]
    assert wide[4] / wide[0] < narrow[4] / narrow[0]  # the wider blur loses mid frequencies sooner
