"""The ReLU rules of the DeconvNet / saliency / guided-backprop / DeSaliNet family (methods.md §5).

Conv, linear and max-pool layers reverse by ordinary autograd (transposed weights, no bias, pooling
switches); only the ReLU backward differs. ``relu_rule(net, rule)`` puts a rule in place for one pass:
the ``forward`` of every ``nn.ReLU``/``nn.ReLU6`` module of ``net`` is overridden on the instance (so hooks
and module identity stay), and the functional ReLUs ``F.relu``, ``F.relu_``, ``torch.relu``,
``torch.relu_``, ``Tensor.relu`` and ``Tensor.relu_`` are patched; all is restored on exit, even on error.
The functional patch is process-wide for the duration of the pass: do not run other models in other
threads meanwhile. A ReLU bound by name before the pass (``from torch.nn.functional import relu``)
is out of reach; other activations (SiLU, GELU, ...) keep their ordinary gradient.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from txkit import TxkitError

# r = the signal coming back; through(r) = r * [x > 0], the plain ReLU gradient (r where the forward ReLU let
# its input through, 0 elsewhere).
RULES: dict[str, Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]] = {
    "deconvnet": lambda r, through: r.clamp(min=0),
    "saliency": lambda r, through: through(r),
    "guided-backprop": lambda r, through: through(r).clamp_(min=0),
    "desalinet": lambda r, through: through(r).clamp_(min=0),
}


def _through(y: torch.Tensor, upper: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """r * [x > 0] (ReLU) or r * [0 < x < upper] (ReLU6) from the forward output y (same mask as x's)."""
    if upper is None:
        return lambda r: torch.ops.aten.threshold_backward(r, y, 0)
    return lambda r: torch.ops.aten.hardtanh_backward(r, y, 0.0, upper)


class RuleReLU(torch.autograd.Function):
    """ReLU (or ReLU6 with ``upper=6``) forward; the rule's backward."""

    @staticmethod
    def forward(ctx, x, rule: str, upper: float | None):
        y = x.clamp(min=0) if upper is None else x.clamp(0, upper)  # not relu: it is patched meanwhile
        ctx.rule, ctx.upper = rule, upper
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, r):
        (y,) = ctx.saved_tensors
        return RULES[ctx.rule](r, _through(y, ctx.upper)), None, None


class RuleReLUInplace(RuleReLU):
    """In-place variant for ``relu_`` and ``F.relu(x, inplace=True)``; same backward."""

    @staticmethod
    def forward(ctx, x, rule: str, upper: float | None):
        ctx.mark_dirty(x)
        y = x.clamp_(min=0) if upper is None else x.clamp_(0, upper)
        ctx.rule, ctx.upper = rule, upper
        ctx.save_for_backward(y)
        return y


def check_rule(rule: str) -> None:
    if rule not in RULES:
        raise TxkitError(f"unknown ReLU rule {rule!r}; rules are: {', '.join(RULES)}")


def _module_forward(rule: str, upper: float | None):
    return lambda x: RuleReLU.apply(x, rule, upper)


def _functional(rule: str):
    def relu(input, inplace=False):
        return RuleReLUInplace.apply(input, rule, None) if inplace else RuleReLU.apply(input, rule, None)

    def relu_(input):
        return RuleReLUInplace.apply(input, rule, None)

    return {(F, "relu"): relu, (F, "relu_"): relu_, (torch, "relu"): lambda input: relu(input),
            (torch, "relu_"): relu_, (torch.Tensor, "relu"): lambda self: relu(self),
            (torch.Tensor, "relu_"): relu_}


_MISSING = object()


@contextmanager
def relu_rule(net: nn.Module, rule: str) -> Iterator[None]:
    """Give every ReLU met while running ``net`` the backward ``rule`` (see the module docstring)."""
    check_rule(rule)
    overridden: list[tuple[nn.Module, object]] = []
    patched: list[tuple[object, str, object]] = []
    try:
        for module in net.modules():
            if isinstance(module, (nn.ReLU, nn.ReLU6)):
                overridden.append((module, module.__dict__.get("forward", _MISSING)))
                module.forward = _module_forward(rule, 6.0 if isinstance(module, nn.ReLU6) else None)
        for (owner, name), replacement in _functional(rule).items():
            patched.append((owner, name, owner.__dict__.get(name, _MISSING)))
            setattr(owner, name, replacement)
        yield
    finally:
        for module, previous in reversed(overridden):
            if previous is _MISSING:
                del module.forward
            else:
                module.forward = previous
        for owner, name, previous in reversed(patched):
            if previous is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, previous)
