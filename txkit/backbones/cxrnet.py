"""The customised CXR CNN of Sivaramakrishnan et al. 2018: 5 conv + 3 FC layers, trained from scratch.

The paper gives no pooling after conv5 and an input of 227x227; like AlexNet we pool after conv5 and use an
adaptive 6x6 average pool so that any input size works and fc6 stays 256*6*6 -> 4096.
"""

from __future__ import annotations

import torch
from torch import nn

from txkit.backbones.base import Backbone, InputSpec
from txkit.errors import WeightsError


class CXRNet(nn.Module):
    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, stride=2), nn.ReLU(inplace=True), nn.LocalResponseNorm(5),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(inplace=True), nn.LocalResponseNorm(5),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


STAGES = [("conv1", ["features.0"]), ("conv2", ["features.4"]), ("conv3", ["features.8"]),
          ("conv4", ["features.10"]), ("conv5", ["features.12"]),
          ("fc6", ["classifier.1"]), ("fc7", ["classifier.4"]), ("fc8", ["classifier.6"])]


def cxrnet(num_classes: int, pretrained: bool = False, **_) -> Backbone:
    if pretrained:
        raise WeightsError("cxrnet has no ImageNet weights (it is trained from scratch); use `weights` none, "
                           "a weights file or an earlier run directory")
    return Backbone(CXRNet(num_classes), STAGES, head="classifier.6", first_conv="features.0",
                    input=InputSpec(size=227))
