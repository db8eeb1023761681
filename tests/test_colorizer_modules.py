"""Colorization modules: exact parameter counts (thesis Table 4.3), shapes, initialisations, trainability."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from txkit.colorizers.modules import (
    ColorUColorizer,
    Conv1x1Colorizer,
    DeconvColorizer,
    PixelShuffleColorizer,
    RepeatColorizer,
    ResizeConvColorizer,
    WindowColorizer,
    icnr_,
)

PNEUMONIAMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"

LEARNED = [DeconvColorizer, ResizeConvColorizer, PixelShuffleColorizer, ColorUColorizer, Conv1x1Colorizer]
ALL_MODULES = LEARNED + [RepeatColorizer, WindowColorizer]

MODULE_PARAMETERS = {
    DeconvColorizer: 596_611,
    ResizeConvColorizer: 596_503,
    PixelShuffleColorizer: 599_440,
    ColorUColorizer: 192_659,
    Conv1x1Colorizer: 6,
    RepeatColorizer: 0,
    WindowColorizer: 0,
}

# Thesis Table 4.3: module + ResNet18's new last layer Linear(512, 5); resize-conv is not in the thesis.
WITH_LAST_LAYER = {
    DeconvColorizer: 599_176,
    PixelShuffleColorizer: 602_005,
    ColorUColorizer: 195_224,
    ResizeConvColorizer: 599_068,
}


@pytest.fixture(autouse=True)
def _one_thread_fixed_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("module_class", ALL_MODULES, ids=lambda c: c.__name__)
def test_module_parameter_count(module_class):
    assert count_parameters(module_class()) == MODULE_PARAMETERS[module_class]


@pytest.mark.parametrize("module_class", list(WITH_LAST_LAYER), ids=lambda c: c.__name__)
def test_module_plus_last_layer_matches_thesis(module_class):
    trainable = nn.ModuleList([module_class(), nn.Linear(512, 5)])
    assert count_parameters(trainable) == WITH_LAST_LAYER[module_class]


@pytest.mark.parametrize("module_class", ALL_MODULES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("size", [(64, 64), (224, 224), (64, 96)], ids=str)
def test_output_is_three_channels_at_input_size(module_class, size):
    with torch.no_grad():
        out = module_class().eval()(torch.rand(1, 1, *size))
    assert out.shape == (1, 3, *size)


@pytest.mark.parametrize("module_class", LEARNED[:4], ids=lambda c: c.__name__)
def test_sizes_not_divisible_by_eight_still_match_input(module_class):
    with torch.no_grad():
        out = module_class().eval()(torch.rand(1, 1, 67, 70))
    assert out.shape == (1, 3, 67, 70)


def test_output_kinds():
    assert RepeatColorizer.output_kind == WindowColorizer.output_kind == "unit"
    assert all(module_class.output_kind == "learned" for module_class in LEARNED)


def test_icnr_sub_pixel_conv_equals_nearest_upsampling_of_base_conv():
    scale, in_channels, out_channels = 4, 8, 3
    conv = nn.Conv2d(in_channels, out_channels * scale**2, 3, padding=1, bias=False)
    kept_base = {}

    def kaiming_and_keep(base):
        kept_base["weight"] = nn.init.kaiming_normal_(base).clone()
        return base

    icnr_(conv.weight, scale, init=kaiming_and_keep)
    x = torch.randn(2, in_channels, 6, 5)
    with torch.no_grad():
        sub_pixel = nn.PixelShuffle(scale)(conv(x))
        base = F.conv2d(x, kept_base["weight"], padding=1)
    assert kept_base["weight"].shape == (out_channels, in_channels, 3, 3)
    torch.testing.assert_close(sub_pixel, F.interpolate(base, scale_factor=scale, mode="nearest"))


def test_icnr_rejects_channels_not_divisible_by_scale_squared():
    with pytest.raises(ValueError):
        icnr_(torch.empty(10, 4, 1, 1), 2)


def test_pixelshuffle_colorizer_has_no_checkerboard_at_init():
    colorizer = PixelShuffleColorizer().eval()  # BatchNorm with fresh running stats: a neutral affine map
    sub_pixel_conv, batch_norm, shuffle = colorizer.head[:3]
    features = torch.randn(1, 64, 5, 7)
    with torch.no_grad():
        shuffled = shuffle(batch_norm(sub_pixel_conv(features)))
    blocks = shuffled.unfold(2, 4, 4).unfold(3, 4, 4)  # (N, C, 5, 7, 4, 4) sub-pixel blocks
    torch.testing.assert_close(blocks, blocks[..., :1, :1].expand_as(blocks))


def test_window_colorizer_on_known_hounsfield_values():
    colorizer = WindowColorizer(input_is_unit=False)
    hu = torch.tensor([-1024.0, -600.0, -160.0, 40.0, 240.0, 3071.0]).view(1, 1, 1, -1)
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.5, 1.0, 1.0],  # level 40, width 400: [-160, 240]
            [326 / 1500, 0.5, 1190 / 1500, 1390 / 1500, 1.0, 1.0],  # level -600, width 1500: [-1350, 150]
            [0.0, 0.0, 0.0, 165 / 350, 1.0, 1.0],  # level 50, width 350: [-125, 225]
        ]
    ).view(1, 3, 1, -1)
    torch.testing.assert_close(colorizer(hu), expected)


def test_window_colorizer_maps_unit_input_through_input_range():
    unit = torch.tensor([0.0, 1064 / 4095, 1.0]).view(1, 1, 1, -1)  # -1024, 40, 3071 HU
    out = WindowColorizer()(unit)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.5, 1.0]))
    assert out.min() >= 0 and out.max() <= 1
    assert [name for name, _ in WindowColorizer().named_buffers()] == ["windows"]


def test_repeat_colorizer_copies_the_gray_channel():
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(RepeatColorizer()(x), x.expand(-1, 3, -1, -1))


def test_conv1x1_starts_as_repeat():
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(Conv1x1Colorizer()(x), RepeatColorizer()(x))


@pytest.fixture(scope="module")
def pneumonia_batch():
    """8 normal + 8 pneumonia PneumoniaMNIST training images, 64x64 in [0, 1]."""
    data = np.load(PNEUMONIAMNIST)
    labels = data["train_labels"][:, 0]
    chosen = np.concatenate([np.flatnonzero(labels == 0)[:8], np.flatnonzero(labels == 1)[:8]])
    images = torch.from_numpy(data["train_images"][chosen]).float().unsqueeze(1) / 255
    images = F.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)
    return images, torch.from_numpy(labels[chosen]).long()


@pytest.mark.parametrize("module_class", LEARNED, ids=lambda c: c.__name__)
def test_learned_module_loss_falls_on_real_images(module_class, pneumonia_batch):
    images, labels = pneumonia_batch
    model = nn.Sequential(module_class(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final_loss = F.cross_entropy(model(images), labels).item()
    assert final_loss < losses[0], losses + [final_loss]
