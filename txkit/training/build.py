"""Build a TxNet from a config: backbone, weights (imagenet, none, a file or an earlier run), colorizer."""

from __future__ import annotations

from pathlib import Path

import torch

from txkit.config import TrainConfig, WeightsSource
from txkit.errors import TxkitError, WeightsError
from txkit.network import TxNet
from txkit.plugins import create
from txkit.rundir import RunDir
from txkit.strategies import Strategy
from txkit.training import checkpoint as ckpt

RUN_WEIGHTS = RunDir.WEIGHTS
DAMAGED_FIX = "it is truncated or damaged: save or download it again, or retrain the run it came from"


def build_strategy(cfg: TrainConfig) -> Strategy:
    """The strategy of ``cfg``, checked against its colorizer so a bad pair fails before a run directory exists."""
    strategy = create("strategy", cfg.strategy)
    if strategy.needs_colorizer:
        strategy.check_colorizer(cfg.colorizer, cfg.colorizer is not None and _colorizer_has_parameters(cfg))
    return strategy


def _colorizer_has_parameters(cfg: TrainConfig) -> bool:
    colorizer = create("colorizer", cfg.colorizer, **cfg.colorizer_options)
    return hasattr(colorizer, "parameters") and any(True for _ in colorizer.parameters())


def resolved_weights(cfg: TrainConfig, strategy: Strategy) -> str:
    """Scratch means random initialisation whatever `weights` says."""
    return str(resolved_source(cfg, strategy))


def resolved_source(cfg: TrainConfig, strategy: Strategy) -> WeightsSource:
    return cfg.weights_source if strategy.pretrained else WeightsSource("none")


def build_network(cfg: TrainConfig, num_classes: int, strategy: Strategy, load_weights: bool = True) -> TxNet:
    source = resolved_source(cfg, strategy) if load_weights else WeightsSource("none")
    if source.kind == "stage":
        raise WeightsError(f"`weights` {source}: stage references only work inside experiment files")
    backbone = create("backbone", cfg.backbone, num_classes=num_classes, pretrained=source.pretrained)
    colorizer = create("colorizer", cfg.colorizer, **cfg.colorizer_options) if cfg.colorizer else None
    net = TxNet(backbone, colorizer, cfg.gray)
    if source.loads_state:
        load_backbone_weights(net, source.value, cfg.backbone)
    if load_weights and cfg.colorizer_from:
        load_colorizer_weights(net, cfg.colorizer_from, cfg.colorizer)
    return net


def read_state(source: str) -> dict[str, torch.Tensor]:
    path = Path(source)
    if not path.exists():
        raise WeightsError(f"`weights` {source}: no such file or run directory; use imagenet, none, a "
                           f".safetensors/.pth file or an earlier txkit run directory")
    if path.is_dir():
        return run_backbone_state(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path, "`weights`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"`weights` {path}: cannot read it as a weights-only PyTorch file ({type(exc).__name__}); "
                           f"the file is damaged or not a state_dict (txkit never unpickles arbitrary objects): "
                           f"save a plain state_dict or .safetensors") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise WeightsError(f"`weights` {path}: expected a state_dict (name -> tensor); save model.state_dict()")
    return tensors


def read_safetensors(path: Path, option: str) -> dict[str, torch.Tensor]:
    """All tensors of ``path``; a truncated, random or unreadable file is one WeightsError starting ``option``."""
    try:
        return ckpt.load_tensors(path, DAMAGED_FIX)
    except TxkitError as exc:
        raise WeightsError(f"{option} {exc}") from None


def run_backbone_state(run_dir: Path) -> dict[str, torch.Tensor]:
    if not (run_dir / RUN_WEIGHTS).exists():
        raise WeightsError(f"`weights` {run_dir}: {run_dir / RUN_WEIGHTS} not found; "
                           f"is it a finished txkit run directory?")
    state = read_safetensors(run_dir / RUN_WEIGHTS, f"`weights` {run_dir}:")
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


def run_config(run_dir: Path, option: str) -> TrainConfig:
    """The TrainConfig of an earlier run given to ``option``; a missing or corrupt config.json is one line."""
    from txkit.rundir import load_run_config

    try:
        return load_run_config(run_dir)[0]
    except TxkitError as exc:
        raise WeightsError(f"{option} {run_dir}: {exc}") from None


def check_run_backbone(run_dir: Path, backbone: str) -> None:
    # A directory without config.json (weights saved by hand) is allowed; the tensor shapes are checked later.
    if not (run_dir / RunDir.CONFIG).exists():
        return
    used = run_config(run_dir, "`weights`").backbone
    if used != backbone:
        raise WeightsError(f"{run_dir} trained backbone {used!r}, not {backbone!r}; pass `backbone` {used}")


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


def check_run_colorizer(run: Path, colorizer_name: str | None) -> None:
    option = f"`colorizer_from` {run}"
    if not (run / RUN_WEIGHTS).exists() or not (run / RunDir.CONFIG).exists():
        raise WeightsError(f"{option}: not a finished txkit run directory (no {RUN_WEIGHTS} or config.json)")
    used = run_config(run, "`colorizer_from`").colorizer
    if used is None:
        raise WeightsError(f"{option}: that run has no colorizer; pass a run trained with a `colorizer`")
    if used != colorizer_name:
        raise WeightsError(f"{option}: that run used colorizer {used!r}; pass `colorizer` {used}")


def load_colorizer_weights(net: TxNet, run_dir: str, colorizer_name: str | None) -> None:
    run = Path(run_dir)
    check_run_colorizer(run, colorizer_name)
    option = f"`colorizer_from` {run}"
    tensors = read_safetensors(run / RUN_WEIGHTS, f"{option}:")
    state = {k[len("colorizer."):]: v for k, v in tensors.items() if k.startswith("colorizer.")}
    try:
        net.colorizer.load_state_dict(state)
    except RuntimeError as exc:  # other colorizer options, or a hand-edited file
        detail = str(exc).strip().splitlines()[-1].strip()  # the first line only names the module class
        raise WeightsError(f"{option}: its colorizer weights do not fit this {colorizer_name} colorizer ({detail}); "
                           f"pass the same `colorizer_options` as that run") from None
