"""Cutting a network at a module boundary: ``NetSplit.prefix`` runs it up to the boundary's input,
``NetSplit.suffix`` runs it from there on (see :mod:`txkit.training.feature_cache`).

One traced forward finds the boundary (the first module of a trainable stage to run) and the modules that run
before it; ``suffix`` short-circuits those (they return zeros of their traced shape, which only reach the
boundary, whose input is replaced by the given features). ``verify_split`` checks a split on a probe batch.
"""

from __future__ import annotations

import torch

class _Stop(Exception):
    def __init__(self, value):
        super().__init__("boundary reached")
        self.value = value


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {""} | {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


class NetSplit:
    """A network cut at the input of module ``boundary``."""

    def __init__(self, net, boundary: str, skipped: dict[str, tuple[tuple[int, ...], torch.dtype]]):
        self.net, self.boundary = net, boundary
        self._boundary = net.get_submodule(boundary)
        self._skipped = [(net.get_submodule(name), shape, dtype) for name, (shape, dtype) in skipped.items()]

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        def stop(_, args):
            raise _Stop(args[0])

        handle = self._boundary.register_forward_pre_hook(stop)
        try:
            self.net(x)
        except _Stop as reached:
            return reached.value
        finally:
            handle.remove()
        raise RuntimeError(f"the forward never reached {self.boundary}")

    def suffix(self, features: torch.Tensor) -> torch.Tensor:
        n, device = features.shape[0], features.device
        saved = []
        for module, shape, dtype in self._skipped:
            saved.append((module, module.__dict__.get("forward")))
            zeros = torch.zeros((), dtype=dtype, device=device).expand(n, *shape)
            module.forward = lambda *_, _z=zeros, **__: _z
        handle = self._boundary.register_forward_pre_hook(lambda _, args: (features, *args[1:]))
        try:
            return self.net(features)
        finally:
            handle.remove()
            for module, forward in saved:
                del module.forward
                if forward is not None:
                    module.forward = forward


def trace_split(net, x: torch.Tensor, trainable_paths: list[str]) -> NetSplit | str:
    """The split at the first trainable module to run, or why there is none."""
    order, inputs, outputs, handles = [], {}, {}, []

    def before(name):
        def hook(_, args):  # returns None: a pre-hook's return value would replace the module's arguments
            if name not in inputs:
                inputs[name] = args[0] if len(args) == 1 else None
                order.append(name)
        return hook

    def after(name):
        def hook(_, __, out):  # returns None, which keeps the output
            if name not in outputs:
                outputs[name] = out
        return hook

    for name, module in net.named_modules():
        handles += [module.register_forward_pre_hook(before(name)), module.register_forward_hook(after(name))]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    inside = [n for n in order if any(n == p or n.startswith(p + ".") for p in trainable_paths)]
    if not inside:
        return "no trainable module runs in the forward"
    boundary = inside[0]
    chain = _ancestors(boundary)
    for name in chain - {boundary}:
        if any(p.requires_grad for p in net.get_submodule(name).parameters(recurse=False)):
            return f"{name or 'the network'} holds trainable parameters of its own"
    skipped = {}
    for name in order[:order.index(boundary)]:
        if name in chain or _parent(name) not in chain:
            continue
        out = outputs.get(name)
        if not isinstance(out, torch.Tensor):
            return f"module {name} before the boundary does not return one tensor"
        if any(p.requires_grad for p in net.get_submodule(name).parameters()):
            return f"module {name} runs before the boundary but trains"
        skipped[name] = (tuple(out.shape[1:]), out.dtype)
    if not skipped:
        return "nothing runs before the first trainable stage"
    if not isinstance(inputs[boundary], torch.Tensor):
        return f"the boundary {boundary} does not take one tensor"
    split = NetSplit(net, boundary, skipped)
    split.probe_features, split.probe_logits = inputs[boundary], outputs[""]
    return split


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    a, b = a.float(), b.float()
    return a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))


def verify_split(split: NetSplit, x: torch.Tensor, amp_context, tol: float) -> str | None:
    """Split logits equal whole-network logits in eval mode (those of the traced forward of ``x``) and in
    train mode under the same seed; the network's buffers, mode and the global random state are left as
    they were."""
    net = split.net
    was_training = net.training
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), amp_context():
            net.eval()
            features = split.probe_features
            if not _close(split.suffix(features), split.probe_logits, tol):
                return "the split network's eval-mode output differs from the whole network's"
            net.train()
            torch.manual_seed(12345)
            whole = net(x)
            torch.manual_seed(12345)
            if not _close(split.suffix(features), whole, tol):
                return "the frozen prefix behaves differently in train mode (dropout or learning batch-norm)"
    except Exception as exc:  # a forward that cannot run cut: train uncached
        return f"the network cannot be cut there ({type(exc).__name__})"
    finally:
        for key, value in net.named_buffers():
            value.copy_(buffers[key])
        net.train(was_training)
    return None
