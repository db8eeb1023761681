"""Optimisers and schedules. Every parameter is in the optimiser from the start; frozen ones simply get
no gradient, so the optimiser's structure never changes and resuming is exact."""

from __future__ import annotations

import torch

from txkit.errors import TxkitError
from txkit.network import TxNet
from txkit.strategies import Phase, Strategy
from txkit.config import TrainConfig

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "exponential", "plateau", "constant")


def phase_settings(cfg: TrainConfig, phase: Phase) -> tuple[float, str, str]:
    lr = cfg.lr if cfg.lr is not None else phase.lr
    optimizer = cfg.optimizer or phase.optimizer
    schedule = cfg.schedule or phase.schedule
    if optimizer not in OPTIMIZERS:
        raise TxkitError(f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise TxkitError(f"`schedule` must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return lr, optimizer, schedule


def param_groups(net: TxNet, strategy: Strategy, lr: float, weight_decay: float) -> list[dict]:
    """Four groups: body weights, body biases, head weights, head biases (Tajbakhsh's LR multipliers)."""
    head = net.head_parameter_names()
    groups = {key: [] for key in ("weight", "bias", "head_weight", "head_bias")}
    for name, param in net.named_parameters():
        is_bias = name.endswith("bias") or param.dim() == 1
        key = ("head_" if name in head else "") + ("bias" if is_bias else "weight")
        groups[key].append(param)
    mult = {"weight": 1.0, "bias": strategy.bias_lr_mult, "head_weight": strategy.head_lr_mult,
            "head_bias": strategy.head_lr_mult * strategy.bias_lr_mult}
    return [{"params": params, "lr": lr * mult[key], "name": key,
             "weight_decay": 0.0 if "bias" in key else weight_decay}
            for key, params in groups.items() if params]


def make_optimizer(name: str, groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"])


def make_scheduler(name: str, optimizer, cfg: TrainConfig, epochs: int, steps_per_epoch: int):
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=max(1, epochs * steps_per_epoch))
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=2)
    return None
