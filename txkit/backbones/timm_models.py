"""Any timm model as a backbone: stages read off the model's top-level layout and its pretrained_cfg."""

from __future__ import annotations

import re

from torch import nn

from txkit.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, InputSpec
from txkit.errors import TxkitError

_STAGE_CONTAINERS = {"blocks": "block", "stages": "stage", "layers": "layer", "features": "feature"}
_STAGE_NAME = re.compile(r"^(layer|stage|block|denseblock|features)_?\d+$")


def timm_stages(model: nn.Module, head: str) -> list[tuple[str, list[str]]]:
    """stem, one stage per block of the model (a numbered child or an element of its block container),
    neck, head."""
    head_top = head.split(".")[0]
    stages, pending = [], []
    for name, child in model.named_children():
        if name == head_top:
            continue
        if name in _STAGE_CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 1:
            _flush(stages, pending)
            stages.extend((f"{_STAGE_CONTAINERS[name]}{i + 1}", [f"{name}.{i}"]) for i in range(len(child)))
        elif _STAGE_NAME.match(name):
            _flush(stages, pending)
            stages.append((name, [name]))
        else:
            pending.append(name)
    if pending:
        stages.append(("neck" if stages else "stem", pending))
    stages.append(("head", [head_top]))
    return stages


def _flush(stages: list, pending: list) -> None:
    """Modules collected before the first block form the stem; between blocks they join the previous one."""
    if pending and not stages:
        stages.append(("stem", list(pending)))
    elif pending:
        stages[-1][1].extend(pending)
    pending.clear()


def from_timm_model(model: nn.Module, num_classes: int, pretrained: str | None,
                    mean=None, std=None) -> Backbone:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    head = cfg.get("classifier", "classifier")
    if isinstance(head, (list, tuple)):
        head = head[0]
    model.reset_classifier(num_classes)
    size = cfg.get("input_size", (3, 224, 224))
    spec = InputSpec(channels=size[0], mean=tuple(mean or cfg.get("mean", IMAGENET_MEAN)),
                     std=tuple(std or cfg.get("std", IMAGENET_STD)), size=size[-1])
    first_conv = cfg.get("first_conv", "conv1")
    if isinstance(first_conv, (list, tuple)):
        first_conv = first_conv[0]
    first_conv = first_conv.removesuffix(".weight")
    return Backbone(model, timm_stages(model, head), head=head, first_conv=first_conv, input=spec,
                    pretrained=pretrained)


def timm_model(num_classes: int, pretrained: bool = False, variant: str = "", **_) -> Backbone:
    import timm

    from txkit.backbones.hub import timm_pretrained

    if variant not in timm.list_models() and variant not in timm.list_models(pretrained=True):
        close = timm.list_models(f"*{variant}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else "; `python -c 'import timm; print(timm.list_models())'`"
        raise TxkitError(f"no timm model named {variant!r}{hint}")
    model = timm_pretrained(variant) if pretrained else timm.create_model(variant, pretrained=False)
    return from_timm_model(model, num_classes, "imagenet" if pretrained else None)
