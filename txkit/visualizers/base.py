"""Helpers for writing visualizers: layers, targets, channels, and leaving the network as it was.

The contract itself (the :class:`~txkit.visualizers.Visualizer` base class and its optional methods) is in
:mod:`txkit.visualizers.contract`; plugins import both from the façade :mod:`txkit.visualizers`.
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from txkit.errors import TxkitError


def normalise(maps: torch.Tensor) -> np.ndarray:
    """Min-max normalise each map to [0, 1] (a constant map becomes zeros)."""
    flat = maps.detach().float().flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp(min=1e-12)
    return scaled.view_as(maps).cpu().numpy()


def default_target(logits: torch.Tensor, target: int | None) -> torch.Tensor:
    if target is None:
        return logits.argmax(dim=1)
    if not 0 <= target < logits.shape[1]:
        raise TxkitError(f"--target {target} is out of range for {logits.shape[1]} classes")
    return torch.full((logits.shape[0],), target, dtype=torch.long, device=logits.device)


def target_classes(target) -> list[int] | None:
    """None, or the class indices of an int or a multi-label sequence."""
    if target is None:
        return None
    if isinstance(target, (int, np.integer)):
        return [int(target)]
    classes = [int(t) for t in target]
    if not classes:
        raise TxkitError("--target needs at least one class")
    return classes


def target_scores(logits: torch.Tensor, target) -> torch.Tensor:
    """One score per image: the top class's logit, the target's, or the sum over a multi-label target."""
    classes = target_classes(target)
    if classes is None:
        return logits.gather(1, default_target(logits, None)[:, None])[:, 0]
    for c in classes:
        default_target(logits, c)  # range check with the usual message
    return logits[:, classes].sum(dim=1)


# --- leaving the network as it was --------------------------------------------------------------------
@contextmanager
def preserved(net: nn.Module, freeze: bool = True) -> Iterator[nn.Module]:
    """Run a visualization pass in eval mode and restore everything it may touch, even on error.

    Restored: each module's training flag, each parameter's ``requires_grad`` and ``.grad``, and the
    ``inplace`` flag of activations. In-place activations are switched off during the pass because they
    overwrite the very layer outputs that visualizers capture; ``freeze`` stops gradients reaching the
    parameters (only the input and the activations need them).
    """
    modes = [(m, m.training) for m in net.modules()]
    params = list(net.parameters())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    inplace = [m for m in net.modules() if getattr(m, "inplace", None) is True]
    try:
        for m in inplace:
            m.inplace = False
        net.eval()
        if freeze:
            for p in params:
                p.requires_grad_(False)
        yield net
    finally:
        for m in inplace:
            m.inplace = True
        for m, mode in modes:
            m.training = mode
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad


# --- layers -------------------------------------------------------------------------------------------
def layer_paths(net: nn.Module) -> list[str]:
    return [name for name, _ in net.named_modules() if name]


def stages_of(net: nn.Module) -> list[tuple[str, list[str]]]:
    return net.stages() if callable(getattr(net, "stages", None)) else []


def resolve_layer(net: nn.Module, layer: str) -> str:
    """The module path named by ``layer`` (a path, a backbone-relative path or a stage name)."""
    paths = layer_paths(net)
    known = set(paths)
    if layer in known:
        return layer
    if f"backbone.{layer}" in known:
        return f"backbone.{layer}"
    stages = dict(stages_of(net))
    if layer in stages:
        return stages[layer][-1]
    close = difflib.get_close_matches(layer, paths + list(stages), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise TxkitError(f"no layer named {layer!r}{hint} (`txkit visualize --list-layers` shows them)")


def output_shapes(net: nn.Module, example: torch.Tensor, paths: Sequence[str] | None = None) -> dict[str, tuple]:
    """Output shape of each module in ``paths`` (default: every module) for one dry run, in call order."""
    modules = dict(net.named_modules())
    wanted = list(paths) if paths is not None else layer_paths(net)
    shapes: dict[str, tuple] = {}
    handles = []

    def record(path):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.setdefault(path, tuple(output.shape))
        return hook

    try:
        for path in wanted:
            handles.append(modules[path].register_forward_hook(record(path)))
        with preserved(net), torch.no_grad():
            net(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def default_layer(net: nn.Module, example: torch.Tensor) -> str:
    """The last module with a spatial output (N, C, h, w), h * w > 1, in the last stage before the head
    that holds a conv (earlier conv stages if that one is already pooled to 1 x 1).

    For a TxNet that is e.g. ``backbone.layer4`` (ResNet), ``backbone.bn2`` (EfficientNet), the last
    max-pool of conv5 (AlexNet, VGG), ``backbone.features.norm5`` (DenseNet). A module without stages uses
    its leaf modules in call order. A 1 x 1 layer is chosen only when nothing larger exists.
    """
    stages = _conv_stages(net)
    if stages:
        shapes = output_shapes(net, example, [p for paths in stages for p in paths])
        ordered = [p for paths in stages for p in reversed(paths)]
    else:
        shapes = output_shapes(net, example)
        leaves = {name for name, m in net.named_modules() if name and not any(True for _ in m.children())}
        ordered = [p for p in reversed(shapes) if p in leaves]
    spatial = [p for p in ordered if len(shapes.get(p, ())) == 4]
    if not spatial:
        raise TxkitError("found no layer with a spatial output to visualize; pass --layer")
    return next((p for p in spatial if shapes[p][2] * shapes[p][3] > 1), spatial[0])


def _conv_stages(net: nn.Module) -> list[list[str]]:
    """Module paths of the stages before the head that hold a conv, the last stage first."""
    modules = dict(net.named_modules())
    return [paths for _, paths in reversed(stages_of(net)[:-1])
            if any(isinstance(m, nn.modules.conv._ConvNd) for p in paths for m in modules[p].modules())]


class _Reached(Exception):
    """Raised by a forward hook to stop the forward pass once the chosen layer has run."""


def forward_to(net: nn.Module, x: torch.Tensor, layer: str | None) -> torch.Tensor:
    """The output of ``layer`` (its first call) for input ``x``; the rest of the network is not run.

    ``layer=None`` runs the whole network and returns its output.
    """
    if layer is None:
        return net(x)
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(output)
        raise _Reached

    handle = net.get_submodule(layer).register_forward_hook(hook)
    try:
        net(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise TxkitError(f"layer {layer!r} is not used in the forward pass; choose another --layer")
    if not isinstance(captured[0], torch.Tensor):
        raise TxkitError(f"layer {layer!r} does not return a tensor; choose another --layer")
    return captured[0]


# --- channels and maps --------------------------------------------------------------------------------
def channel_strength(activation: torch.Tensor) -> torch.Tensor:
    """(N, C) strength of each channel: its largest value over the spatial positions."""
    return activation.flatten(2).amax(dim=2) if activation.dim() > 2 else activation


def channel_mask(activation: torch.Tensor, channel) -> torch.Tensor:
    """A 0/1 mask over the channels of ``activation`` keeping the whole layer, one channel or the top one."""
    if channel is None:
        return torch.ones_like(activation)
    count = activation.shape[1]
    if channel == "top":
        chosen = channel_strength(activation.detach()).argmax(dim=1)
        keep = torch.nn.functional.one_hot(chosen, count).to(activation.dtype)
    else:
        indices = target_classes(channel)
        bad = [c for c in indices if not 0 <= c < count]
        if bad:
            raise TxkitError(f"--channel {bad[0]} is out of range: the layer has {count} channels")
        keep = torch.zeros(activation.shape[0], count, dtype=activation.dtype, device=activation.device)
        keep[:, indices] = 1
    return keep.view(*keep.shape, *([1] * (activation.dim() - 2))).expand_as(activation)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) or (N, C, h, w) maps resized bilinearly to ``size``."""
    squeeze = maps.dim() == 3
    x = maps[:, None] if squeeze else maps
    if tuple(x.shape[-2:]) != tuple(size):
        x = torch.nn.functional.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return x[:, 0] if squeeze else x


def parse_channel(value: str | None):
    """--channel: None, ``top`` or an integer."""
    if value is None or value == "top":
        return value
    try:
        return int(value)
    except ValueError:
        raise TxkitError(f"--channel expects an integer or 'top', got {value!r}") from None
