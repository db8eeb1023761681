"""torchvision backbones with their stages (Tajbakhsh's layer names generalised)."""

from __future__ import annotations

from torch import nn

from txkit.backbones.base import Backbone, sequential_stages
from txkit.backbones.hub import torchvision_imagenet_state


def _build(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    if pretrained:
        model.load_state_dict(torchvision_imagenet_state(name))
    return model


def _alexnet_like(name: str, num_classes: int, pretrained: bool) -> Backbone:
    model = _build(name, pretrained)
    # AlexNet's conv3 and conv4 have no pooling after them, so its stages end at ReLUs too.
    boundary = _alexnet_boundary(model.features) if name == "alexnet" else (lambda m: isinstance(m, nn.MaxPool2d))
    convs = sequential_stages("features", model.features, [f"conv{i}" for i in range(1, 6)], boundary)
    fcs = [("fc6", ["classifier.0", "classifier.1", "classifier.2"]),
           ("fc7", ["classifier.3", "classifier.4", "classifier.5"]),
           ("fc8", ["classifier.6"])]
    backbone = Backbone(model, convs + fcs, head="classifier.6", first_conv="features.0",
                        pretrained="imagenet" if pretrained else None)
    backbone.replace_head(num_classes)
    return backbone


def _alexnet_boundary(features: nn.Sequential):
    relus_after_conv = {id(m) for i, m in enumerate(features)
                        if isinstance(m, nn.ReLU) and not _pool_follows(features, i)}
    pools = {id(m) for m in features if isinstance(m, nn.MaxPool2d)}
    return lambda m: id(m) in relus_after_conv | pools


def _pool_follows(features: nn.Sequential, index: int) -> bool:
    return index + 1 < len(features) and isinstance(features[index + 1], nn.MaxPool2d)


def alexnet(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    return _alexnet_like("alexnet", num_classes, pretrained)


def vgg16(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    return _alexnet_like("vgg16", num_classes, pretrained)


def vgg19(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    return _alexnet_like("vgg19", num_classes, pretrained)


def _resnet(name: str, num_classes: int, pretrained: bool) -> Backbone:
    model = _build(name, pretrained)
    stages = [("stem", ["conv1", "bn1"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)] + [("fc", ["fc"])]
    backbone = Backbone(model, stages, head="fc", first_conv="conv1", pretrained="imagenet" if pretrained else None)
    backbone.replace_head(num_classes)
    return backbone


def resnet18(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    return _resnet("resnet18", num_classes, pretrained)


def resnet50(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    return _resnet("resnet50", num_classes, pretrained)


def densenet121(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    model = _build("densenet121", pretrained)
    stages = [("stem", ["features.conv0", "features.norm0"]),
              ("denseblock1", ["features.denseblock1", "features.transition1"]),
              ("denseblock2", ["features.denseblock2", "features.transition2"]),
              ("denseblock3", ["features.denseblock3", "features.transition3"]),
              ("denseblock4", ["features.denseblock4", "features.norm5"]),
              ("classifier", ["classifier"])]
    backbone = Backbone(model, stages, head="classifier", first_conv="features.conv0",
                        pretrained="imagenet" if pretrained else None)
    backbone.replace_head(num_classes)
    return backbone
