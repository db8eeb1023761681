"""TxNet: grayscale input adapter or colorizer, then a backbone, with named stages for strategies.

A TxNet takes (N, 1, H, W) grayscale in [0, 1] and returns logits. Everything a backbone needs from its
weights (3 channels, ImageNet normalisation) happens inside, so predict and visualize feed raw images.
"""

from __future__ import annotations

import torch
from torch import nn

from txkit.backbones.base import Backbone
from txkit.errors import TxkitError

GRAY_MODES = ("repeat", "sum")
# Thesis (Piano 2020) normalisation of the grayscale input of a learned colorizer (CheXpert statistics).
COLORIZER_INPUT_MEAN, COLORIZER_INPUT_STD = 0.5028, 0.2902


class Normalize(nn.Module):
    """Repeat a 1-channel input to ``len(mean)`` channels (if needed) and normalise per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class TxNet(nn.Module):
    def __init__(self, backbone: Backbone, colorizer: nn.Module | None = None, gray: str = "repeat"):
        super().__init__()
        spec = backbone.input
        self.input_spec = spec
        self.backbone = backbone.model
        self.backbone_stages = backbone.stages
        self.head_path = f"backbone.{backbone.head}"
        self.colorizer = colorizer
        if colorizer is None:
            if gray not in GRAY_MODES:
                raise TxkitError(f"`gray` must be one of {', '.join(GRAY_MODES)}, got {gray!r}")
            if gray == "sum" and spec.channels == 3:
                sum_first_conv(backbone)
                self.pre = Normalize((sum(spec.mean) / 3,), (sum(spec.std) / 3,))
            else:
                self.pre = Normalize(spec.mean, spec.std)
            self.post = nn.Identity()
        elif getattr(colorizer, "output_kind", "learned") == "unit":
            self.pre, self.post = nn.Identity(), Normalize(spec.mean, spec.std)
        else:
            self.pre = Normalize((COLORIZER_INPUT_MEAN,), (COLORIZER_INPUT_STD,))
            self.post = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.to_backbone_input(x))

    def to_backbone_input(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize broadcasts a 1-channel input against 3-channel mean/std: that is the gray "repeat".
        x = self.pre(x)
        if self.colorizer is not None:
            x = self.post(self.colorizer(x))
        return x

    def colorized(self, x: torch.Tensor) -> torch.Tensor:
        """What the colorizer hands the backbone, mapped back to displayable RGB in [0, 1]."""
        if self.colorizer is None:
            raise TxkitError("this network has no colorizer (train with `colorizer` NAME)")
        out = self.colorizer(self.pre(x))
        if getattr(self.colorizer, "output_kind", "learned") != "unit":
            mean = torch.tensor(self.input_spec.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.input_spec.std, device=x.device).view(1, -1, 1, 1)
            out = out * std + mean  # undo the normalisation the backbone's weights expect
        return out.clamp(0, 1)

    # --- stages -------------------------------------------------------------------------------------
    def stages(self) -> list[tuple[str, list[str]]]:
        """Ordered (name, module paths) from input to head; ``colorizer`` first when it has parameters."""
        out = [(name, [f"backbone.{p}" for p in paths]) for name, paths in self.backbone_stages]
        if self.colorizer is not None and any(True for _ in self.colorizer.parameters()):
            out.insert(0, ("colorizer", ["colorizer"]))
        return out

    def stage_names(self) -> list[str]:
        return [name for name, _ in self.stages()]

    @property
    def head_stage(self) -> str:
        return self.stage_names()[-1]

    def stage_parameters(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Every parameter assigned to exactly one stage (unlisted ones join the nearest earlier stage)."""
        prefixes = [(name, path) for name, paths in self.stages() for path in paths]
        out: dict[str, list] = {name: [] for name in self.stage_names()}
        order = self.stage_names()
        last_stage = order[0]
        for pname, param in self.named_parameters():
            stage = next((s for s, p in prefixes if pname == p or pname.startswith(p + ".")), None)
            if stage is None:
                stage = last_stage
            out[stage].append((pname, param))
            last_stage = stage
        return out

    def set_trainable(self, stages: set[str]) -> None:
        unknown = stages - set(self.stage_names())
        if unknown:
            raise TxkitError(f"unknown stage(s) {sorted(unknown)}; stages are: {', '.join(self.stage_names())}")
        for stage, params in self.stage_parameters().items():
            for _, param in params:
                param.requires_grad_(stage in stages)
        self.train(self.training)

    def trainable_stages(self) -> list[str]:
        return [s for s, params in self.stage_parameters().items() if any(p.requires_grad for _, p in params)]

    def train(self, mode: bool = True):
        """Like nn.Module.train, but batch-norm layers whose parameters are frozen keep their statistics."""
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = list(module.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self

    def reset_head(self) -> None:
        self.get_submodule(self.head_path).reset_parameters()

    def head_parameter_names(self) -> set[str]:
        return {f"{self.head_path}.{n}" for n, _ in self.get_submodule(self.head_path).named_parameters()}


def sum_first_conv(backbone: Backbone) -> None:
    """Adapt the first conv to one input channel by summing its kernels over RGB (timm's adapt_input_conv).

    The module is changed in place so subclasses such as timm's Conv2dSame keep their padding rule.
    """
    conv = backbone.model.get_submodule(backbone.first_conv)
    conv.weight = nn.Parameter(conv.weight.detach().sum(dim=1, keepdim=True))
    conv.in_channels = 1
