"""Networks to visualize: a finished run, or a backbone with given weights (ImageNet head kept).

``build_network`` in training replaces every head with a fresh one; for visualizing ImageNet weights the
class scores only mean something with the original 1000-class head, so :func:`network_from_weights`
puts it back when ``--weights imagenet`` and no other class count is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from txkit.config import WeightsSource
from txkit.errors import TxkitError
from txkit.network import TxNet

IMAGENET_CLASSES = 1000
DEFAULT_CLASSES = 2


@dataclass
class Subject:
    """A network to visualize with what the CLI needs to feed and label it."""

    label: str
    net: TxNet
    image_size: int
    classes: list[str] = field(default_factory=list)
    task: str = "multiclass"  # how a logit becomes a probability in titles: softmax, or sigmoid ("multilabel")


def subject_from_run(run_dir: str | Path) -> Subject:
    from txkit.run.load import load_run

    net, meta = load_run(run_dir)
    resolved = meta["resolved"]
    return Subject(Path(run_dir).name, net, int(resolved["image_size"]), list(resolved.get("classes", [])),
                   str(resolved.get("task", "multiclass")))


def network_from_weights(backbone: str, weights: str = "imagenet", num_classes: int | None = None) -> TxNet:
    """A TxNet of ``backbone`` with ``weights`` (imagenet, none, a file or a run directory)."""
    return _build(backbone, weights, num_classes)[0]


def subject_from_weights(backbone: str, weights: str = "imagenet", num_classes: int | None = None,
                         image_size: int | None = None) -> Subject:
    net, native_size = _build(backbone, weights, num_classes)
    source = weights if not WeightsSource.parse(weights).loads_state else Path(weights).name
    return Subject(f"{backbone} ({source})", net, image_size or native_size)


def _build(backbone: str, weights: str, num_classes: int | None) -> tuple[TxNet, int]:
    """The network as ``build_network`` makes it (gray repeated, no colorizer) and its native input size."""
    from txkit.plugins import create
    from txkit.training.build import load_backbone_weights

    source = WeightsSource.parse(weights)
    keep_imagenet_head = source.pretrained and num_classes in (None, IMAGENET_CLASSES)
    count = num_classes or (IMAGENET_CLASSES if source.pretrained else DEFAULT_CLASSES)
    spec = create("backbone", backbone, num_classes=count, pretrained=source.pretrained)
    net = TxNet(spec)
    if source.loads_state:
        load_backbone_weights(net, source.value, backbone)
    if keep_imagenet_head:
        head = net.get_submodule(net.head_path)
        head.load_state_dict(imagenet_head_state(backbone, net.head_path[len("backbone."):]))
    return net.eval(), spec.input.size


def imagenet_head_state(backbone: str, head: str) -> dict[str, torch.Tensor]:
    """The original ImageNet classifier weights of a built-in backbone or a timm model."""
    if backbone == "efficientnet_lite0":
        return _efficientnet_lite0_head()
    if backbone.startswith("timm/"):
        from txkit.backbones.hub import timm_pretrained

        return timm_pretrained(backbone[len("timm/"):]).get_classifier().state_dict()
    try:
        import torchvision

        torchvision.models.get_model_weights(backbone)
    except ValueError:
        raise TxkitError(f"{backbone} has no ImageNet classifier to restore; pass --num-classes N "
                         f"(a new, untrained head)") from None
    from txkit.backbones.hub import torchvision_imagenet_state

    state = torchvision_imagenet_state(backbone)
    return {"weight": state[f"{head}.weight"], "bias": state[f"{head}.bias"]}


def _efficientnet_lite0_head() -> dict[str, torch.Tensor]:
    import timm

    from txkit.backbones.base import load_state_by_position
    from txkit.backbones.efficientnet import packaged_weights_path

    path = packaged_weights_path()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_state_by_position(model, torch.load(path, map_location="cpu", weights_only=True), path)
    return model.get_classifier().state_dict()
