"""Parameter counts per stage under a strategy (the thesis' Table 4.3 view)."""

from __future__ import annotations

import torch

from txkit.training.build import build_network, build_strategy
from txkit.config import TrainConfig


def inspect_model(cfg: TrainConfig, num_classes: int) -> dict:
    strategy = build_strategy(cfg)
    torch.manual_seed(0)
    net = build_network(cfg, num_classes, strategy, load_weights=False)
    trainable = strategy.trainable(strategy.phases[0], net.stage_names(), not cfg.freeze_colorizer)
    net.set_trainable(trainable)
    stages = [{"name": name, "parameters": sum(p.numel() for _, p in params), "trainable": name in trainable}
              for name, params in net.stage_parameters().items()]
    return {"backbone": cfg.backbone, "colorizer": cfg.colorizer, "strategy": cfg.strategy,
            "num_classes": num_classes, "phase": strategy.phases[0].name,
            "total": sum(p.numel() for p in net.parameters()),
            "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad), "stages": stages}
