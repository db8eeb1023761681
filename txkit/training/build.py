"""Build a TxNet from a config: backbone, weights (imagenet, none, a file or an earlier run), colorizer."""

from __future__ import annotations

from pathlib import Path

import torch

from txkit.errors import WeightsError
from txkit.network import TxNet
from txkit.plugins import create
from txkit.strategies import Strategy
from txkit.training.config import TrainConfig

RUN_WEIGHTS = "model.safetensors"


def build_strategy(cfg: TrainConfig) -> Strategy:
    return create("strategy", cfg.strategy)


def resolved_weights(cfg: TrainConfig, strategy: Strategy) -> str:
    """Scratch means random initialisation whatever --weights says."""
    return cfg.weights if strategy.pretrained else "none"


def build_network(cfg: TrainConfig, num_classes: int, strategy: Strategy, load_weights: bool = True) -> TxNet:
    weights = resolved_weights(cfg, strategy) if load_weights else "none"
    backbone = create("backbone", cfg.backbone, num_classes=num_classes, pretrained=weights == "imagenet")
    colorizer = create("colorizer", cfg.colorizer, **cfg.colorizer_options) if cfg.colorizer else None
    net = TxNet(backbone, colorizer, cfg.gray)
    if weights not in ("imagenet", "none"):
        load_backbone_weights(net, weights, cfg.backbone)
    if load_weights and cfg.colorizer_from:
        load_colorizer_weights(net, cfg.colorizer_from, cfg.colorizer)
    return net


def read_state(source: str) -> dict[str, torch.Tensor]:
    path = Path(source)
    if not path.exists():
        raise WeightsError(f"--weights {source}: no such file or run directory; use imagenet, none, a "
                           f".safetensors/.pth file or an earlier txkit run directory")
    if path.is_dir():
        return run_backbone_state(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read as a weights-only PyTorch file ({type(exc).__name__}); "
                           f"txkit never unpickles arbitrary objects: save a plain state_dict or .safetensors") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state_dict (name -> tensor)")
    return state


def run_backbone_state(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = run_dir / RUN_WEIGHTS
    if not weights.exists():
        raise WeightsError(f"{weights}: not found; is {run_dir} a finished txkit run directory?")
    state = load_file(str(weights))
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


def check_run_backbone(run_dir: Path, backbone: str) -> None:
    from txkit.training.checkpoint import read_json

    config = run_dir / "config.json"
    if config.exists():
        used = read_json(config)["config"]["backbone"]
        if used != backbone:
            raise WeightsError(f"{run_dir} trained backbone {used!r}, not {backbone!r}; pass --backbone {used}")


def load_backbone_weights(net: TxNet, source: str, backbone_name: str) -> None:
    """Load everything but the head; a 3-channel first conv is summed when the net takes 1 channel."""
    if Path(source).is_dir():
        check_run_backbone(Path(source), backbone_name)
    state = read_state(source)
    model = net.backbone
    target = model.state_dict()
    head = net.head_path[len("backbone."):]
    wanted = {k: v for k, v in target.items() if not k.startswith(head + ".")}
    incoming = {k: _adapt_channels(v, target[k]) for k, v in state.items() if k in wanted}
    matched = {k: v for k, v in incoming.items() if v.shape == wanted[k].shape}
    if len(matched) < len(wanted):
        missing = sorted(set(wanted) - set(matched))
        raise WeightsError(f"{source}: {len(missing)} of {len(wanted)} backbone tensors missing or of another "
                           f"shape (first: {missing[0]}); is it a {backbone_name} checkpoint?")
    model.load_state_dict(matched, strict=False)


def _adapt_channels(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if value.dim() == 4 and target.dim() == 4 and value.shape[1] == 3 and target.shape[1] == 1:
        return value.sum(dim=1, keepdim=True)
    return value


def load_colorizer_weights(net: TxNet, run_dir: str, colorizer_name: str | None) -> None:
    from safetensors.torch import load_file

    from txkit.training.checkpoint import read_json

    path = Path(run_dir)
    weights, config = path / RUN_WEIGHTS, path / "config.json"
    if not weights.exists() or not config.exists():
        raise WeightsError(f"--colorizer-from {run_dir}: not a txkit run directory (no {RUN_WEIGHTS}/config.json)")
    used = read_json(config)["config"].get("colorizer")
    if used is None or used != colorizer_name:
        raise WeightsError(f"--colorizer-from {run_dir}: that run used colorizer {used!r}; "
                           f"pass --colorizer {used}" if used else f"--colorizer-from {run_dir}: that run has no colorizer")
    state = {k[len("colorizer."):]: v for k, v in load_file(str(weights)).items() if k.startswith("colorizer.")}
    net.colorizer.load_state_dict(state)
