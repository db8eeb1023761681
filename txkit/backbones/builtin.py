"""txkit's own backbones, registered through the same hook a third-party plugin uses."""

from txkit.hookspecs import hookimpl

_TV = "txkit.backbones.torchvision_models"


@hookimpl
def register_backbones(register):
    register("alexnet", f"{_TV}:alexnet", "AlexNet (torchvision); stages conv1-conv5, fc6-fc8; ImageNet weights")
    register("vgg16", f"{_TV}:vgg16", "VGG-16 (torchvision); stages conv1-conv5, fc6-fc8; ImageNet weights")
    register("vgg19", f"{_TV}:vgg19", "VGG-19 (torchvision); stages conv1-conv5, fc6-fc8; ImageNet weights")
    register("resnet18", f"{_TV}:resnet18", "ResNet-18 (torchvision); stages stem, layer1-layer4, fc; ImageNet weights")
    register("resnet50", f"{_TV}:resnet50", "ResNet-50 (torchvision); stages stem, layer1-layer4, fc; ImageNet weights")
    register("densenet121", f"{_TV}:densenet121",
             "DenseNet-121 (torchvision); stages stem, denseblock1-4, classifier; ImageNet weights")
    register("efficientnet_lite0", "txkit.backbones.efficientnet:efficientnet_lite0",
             "EfficientNet-Lite0 (timm tf_efficientnet_lite0); real ImageNet weights shipped offline")
    register("cxrnet", "txkit.backbones.cxrnet:cxrnet",
             "customised 5-conv/3-FC CXR CNN of Sivaramakrishnan et al. 2018 (trained from scratch)")
    register("timm/*", "txkit.backbones.timm_models:timm_model",
             "any timm model, e.g. timm/convnext_tiny; ImageNet weights from the timm hub or a local file")
