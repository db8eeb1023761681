"""Colorization modules: map a 1-channel image to the 3 channels an ImageNet backbone expects.

Learned modules (DECONV, resize-conv, PixelShuffle, ColorU) follow Piano's thesis, Chapter 4.3 and
Appendix B; the fixed ones (repeat, CT windows) and the 1x1 conv are the usual baselines.
Every module takes (N, 1, H, W) and returns (N, 3, H, W) with the same H, W.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.01
STEM_CHANNELS = 64
STEM_BLOCKS = 8
UPSCALE = 4  # the residual stem reduces H, W by 4; every head brings them back up by 4


def icnr_(
    weight: torch.Tensor,
    scale: int,
    init: Callable[[torch.Tensor], torch.Tensor] = nn.init.kaiming_normal_,
) -> torch.Tensor:
    """ICNR (Aitken et al. 2017): initialise in place a conv weight feeding PixelShuffle(scale).

    A kernel W0 of shape (C, C_in, k, k) is drawn with `init` and every output channel c of the
    sub-pixel conv (shape (C * scale**2, C_in, k, k)) gets W0[c] on all its scale**2 sub-pixels, so at
    initialisation conv + PixelShuffle equals conv-with-W0 followed by nearest-neighbour up-sampling.
    """
    sub_pixels = scale * scale
    out_channels = weight.shape[0]
    if out_channels % sub_pixels:
        raise ValueError(f"{out_channels} output channels are not divisible by scale**2 = {sub_pixels}")
    base = weight.new_empty((out_channels // sub_pixels, *weight.shape[1:]))
    init(base)
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(sub_pixels, dim=0))
    return weight


def _resize_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to `size`, or the input itself when it already has that size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, **conv_kwargs) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, **conv_kwargs),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class ResidualBlock(nn.Module):
    """y = x + B(A(x)), A and B each conv3x3 -> BN -> LeakyReLU; nothing after the addition."""

    def __init__(self, channels: int = STEM_CHANNELS):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_act(channels, channels, 3, padding=1),
            _conv_bn_act(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def residual_stem() -> nn.Sequential:
    """(DE)2CO stem (Carlucci et al. 2017): 1 x H x W -> 64 x H/4 x W/4 (224 -> 111 -> 56).

    For H divisible by 4 the conv (k7, s2, p2) gives H/2 - 1 and the max-pool gives exactly H/4.
    """
    return nn.Sequential(
        _conv_bn_act(1, STEM_CHANNELS, 7, stride=2, padding=2),
        nn.MaxPool2d(3, stride=2, padding=1),
        *[ResidualBlock() for _ in range(STEM_BLOCKS)],
    )


def _init_stem_(stem: nn.Module) -> None:
    """(DE)2CO initialisation: Xavier-uniform conv weights, BatchNorm weight 1 / bias 0."""
    for layer in stem.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class DeconvColorizer(nn.Module):
    """DECONV module (Piano thesis 4.3, after (DE)2CO, Carlucci et al. 2017): residual stem, 1x1 conv to
    3 channels, then a depthwise transposed conv (k8, s4, p2) back to the input size. 596,611 parameters.
    """

    output_kind = "learned"

    def __init__(self):
        super().__init__()
        self.stem = residual_stem()
        self.to_rgb = nn.Conv2d(STEM_CHANNELS, 3, 1)
        self.upsample = nn.ConvTranspose2d(3, 3, 8, stride=UPSCALE, padding=2, groups=3, bias=False)
        _init_stem_(self.stem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        features = self.to_rgb(self.stem(x))
        if self._reachable(features, size):
            return self.upsample(features, output_size=size)
        # Sizes the stride-4 deconv cannot produce (H not divisible by 4, e.g. 67): deconv to 4x the
        # feature size, then resize to the input size.
        return _resize_to(self.upsample(features), size)

    @staticmethod
    def _reachable(features: torch.Tensor, size: tuple[int, int]) -> bool:
        # ConvTranspose2d(k8, s4, p2) can output 4*n ... 4*n + 3 (output_padding < stride).
        return all(UPSCALE * n <= s < UPSCALE * (n + 1) for n, s in zip(features.shape[-2:], size))


class ResizeConvColorizer(nn.Module):
    """Resized-convolution module (Piano thesis 4.3.1, after Odena et al. 2016; no result in the thesis):
    residual stem, 1x1 conv to 3 channels, nearest up-sampling x4, reflection-padded 3x3 conv.
    596,503 parameters.
    """

    output_kind = "learned"

    def __init__(self):
        super().__init__()
        self.stem = residual_stem()
        self.head = nn.Sequential(
            nn.Conv2d(STEM_CHANNELS, 3, 1),
            nn.Upsample(scale_factor=UPSCALE, mode="nearest"),
            nn.ReflectionPad2d(1),
            nn.Conv2d(3, 3, 3),
        )
        _init_stem_(self.stem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exactly H x W when H, W are divisible by 4; otherwise the x4 result is resized to H x W.
        return _resize_to(self.head(self.stem(x)), tuple(x.shape[-2:]))


class PixelShuffleColorizer(nn.Module):
    """PixelShuffle module (Piano thesis 4.3 / Appendix B.1.2): residual stem, ICNR-initialised 1x1 conv
    (Aitken et al. 2017) to 48 channels, BatchNorm, PixelShuffle(4), then a 2x2 average blur that keeps
    the size (replication pad left/top). 599,440 parameters.
    """

    output_kind = "learned"

    def __init__(self):
        super().__init__()
        self.stem = residual_stem()
        sub_pixel_conv = nn.Conv2d(STEM_CHANNELS, 3 * UPSCALE**2, 1)
        icnr_(sub_pixel_conv.weight, UPSCALE)
        # A per-channel random bias would differ between the sub-pixels of one output pixel and undo ICNR.
        nn.init.zeros_(sub_pixel_conv.bias)
        self.head = nn.Sequential(
            sub_pixel_conv,
            nn.BatchNorm2d(3 * UPSCALE**2),
            nn.PixelShuffle(UPSCALE),
            nn.ReplicationPad2d((1, 0, 1, 0)),
            nn.AvgPool2d(2, stride=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exactly H x W when H, W are divisible by 4; otherwise the x4 result is resized to H x W.
        return _resize_to(self.head(self.stem(x)), tuple(x.shape[-2:]))


def _down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 1, 1),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(out_channels, out_channels, 4, 2, 1),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.BatchNorm2d(out_channels),
    )


def _up(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(out_channels, out_channels, 3, 1, 1),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(out_channels, out_channels, 3, 1, 1),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.BatchNorm2d(out_channels),
    )


def _out(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, mid_channels, 4, 2, 1),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(mid_channels, mid_channels, 3, 1, 1),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(mid_channels, out_channels, 1),
    )


class ColorUColorizer(nn.Module):
    """ColorU module (Piano thesis 4.3, after ColorUNet, Billaut et al. 2018): a 3-level U-Net with
    PyTorch default initialisation. 192,659 parameters.
    """

    output_kind = "learned"
    SIZE_MULTIPLE = 8  # three stride-2 levels

    def __init__(self):
        super().__init__()
        self.down1 = _down(1, 16)
        self.down2 = _down(16, 32)
        self.down3 = _down(32, 64)
        self.up1 = _up(64, 32)
        self.up2 = _up(64, 16)
        self.out = _out(32, 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        padded = self._pad_to_multiple(x)
        d1 = self.down1(padded)
        d2 = self.down2(d1)
        u1 = self.up1(self.down3(d2))
        u2 = self.up2(torch.cat([d2, u1], dim=1))
        return self.out(torch.cat([d1, u2], dim=1))[..., :height, :width]

    def _pad_to_multiple(self, x: torch.Tensor) -> torch.Tensor:
        # Sizes divisible by 8 pass unchanged; others are replicate-padded right/bottom, and the
        # output is cropped back, so the skip connections line up.
        pad_h = -x.shape[-2] % self.SIZE_MULTIPLE
        pad_w = -x.shape[-1] % self.SIZE_MULTIPLE
        if pad_h == 0 and pad_w == 0:
            return x
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


class Conv1x1Colorizer(nn.Module):
    """Learned linear gray -> RGB map, Conv2d(1, 3, 1) (6 parameters); starts as the repeat colorizer
    (weight 1, bias 0). The baseline the thesis's learned modules are measured against."""

    output_kind = "learned"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)
        nn.init.ones_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class RepeatColorizer(nn.Module):
    """No parameters: the gray channel repeated on R, G and B (the usual baseline in the thesis)."""

    output_kind = "unit"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, 3, 1, 1)


class WindowColorizer(nn.Module):
    """Fixed CT window/level per output channel, for Hounsfield-unit inputs; no parameters.

    `windows` holds one (level, width) pair per output channel; each channel is
    clamp((hu - (level - width / 2)) / width, 0, 1). With `input_is_unit=False` the input is in HU and the
    windows apply to it directly (`intensity` hu feeds the true HU of CT and sets this). With
    `input_is_unit=True` the input is taken as scaled to [0, 1] and mapped linearly to `input_range` in HU
    first: the true HU only when the input was made by that same mapping (`intensity` auto / dicom-voi on CT
    without a header window shows -1024..3071 HU as 0..1); for 8-bit images it is a fixed grey-to-colour map.
    Defaults: soft tissue (40, 400), lung (-600, 1500), mediastinum (50, 350).
    """

    output_kind = "unit"

    def __init__(
        self,
        windows: Sequence[tuple[float, float]] = ((40, 400), (-600, 1500), (50, 350)),
        input_range: tuple[float, float] = (-1024, 3071),
        input_is_unit: bool = True,
    ):
        super().__init__()
        windows_tensor = torch.as_tensor(windows, dtype=torch.float32)
        if windows_tensor.ndim != 2 or windows_tensor.shape[1] != 2:
            raise ValueError(f"windows must be (level, width) pairs, got shape {tuple(windows_tensor.shape)}")
        if (windows_tensor[:, 1] <= 0).any():
            raise ValueError("every window width must be positive")
        self.register_buffer("windows", windows_tensor)
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.input_is_unit = input_is_unit

    @property
    def input_units(self) -> str:
        """"HU" when the input must be in Hounsfield units, "unit" for [0, 1] (txkit.datasets.intensity)."""
        return "unit" if self.input_is_unit else "HU"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hu = self._to_hounsfield(x)
        level = self.windows[:, 0].view(1, -1, 1, 1).to(hu.dtype)
        width = self.windows[:, 1].view(1, -1, 1, 1).to(hu.dtype)
        return ((hu - (level - width / 2)) / width).clamp(0, 1)

    def _to_hounsfield(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            x = x.float()
        if not self.input_is_unit:
            return x
        low, high = self.input_range
        return low + x * (high - low)

    def extra_repr(self) -> str:
        return (
            f"windows={self.windows.tolist()}, input_range={self.input_range}, "
            f"input_is_unit={self.input_is_unit}"
        )
