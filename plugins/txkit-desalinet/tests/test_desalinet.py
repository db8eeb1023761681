"""The reversal family against direct implementations of the rules in methods.md §5."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from txkit import TxkitError, create, normalise, registry
from txkit_desalinet.reversal import reconstruct
from txkit_desalinet.rules import relu_rule

torch.set_num_threads(2)


class ConvReluPoolConv(nn.Module):
    """conv-relu-maxpool-conv, the ReLU as a module, a functional call or a Tensor method (in-place or not)."""

    def __init__(self, relu: str = "functional", relu_module=nn.ReLU):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1)
        self.relu_kind, self.relu = relu, relu_module(inplace=True)

    def activate(self, x):
        return {"module": lambda: self.relu(x), "functional": lambda: F.relu(x),
                "inplace": lambda: F.relu(x, inplace=True), "method": lambda: x.relu_(),
                "torch": lambda: torch.relu(x)}[self.relu_kind]()

    def forward(self, x):
        return self.conv2(F.max_pool2d(self.activate(self.conv1(x)), 2))


def direct_reversal(net, x, rule_backward, keep=None):
    """The same network reversed by hand: transposed convs without bias, unpooling at the forward switches."""
    a1 = net.conv1(x)
    upper = 6.0 if isinstance(net.relu, nn.ReLU6) and net.relu_kind == "module" else None
    r1 = a1.clamp(min=0) if upper is None else a1.clamp(0, upper)
    pooled, switches = F.max_pool2d(r1, 2, return_indices=True)
    a2 = net.conv2(pooled).detach()
    seed = a2 if keep is None else a2 * keep
    back = F.conv_transpose2d(seed, net.conv2.weight, padding=1)
    back = F.max_unpool2d(back, switches, 2, output_size=r1.shape[-2:])
    passed = ((a1 > 0) if upper is None else (a1 > 0) & (a1 < upper)).float()
    return F.conv_transpose2d(rule_backward(back, passed), net.conv1.weight, padding=1).detach()


DESALINET = lambda r, passed: (r * passed).clamp(min=0)  # noqa: E731
DECONVNET = lambda r, passed: r.clamp(min=0)  # noqa: E731


@pytest.mark.parametrize("relu", ["module", "functional", "inplace", "method", "torch"])
def test_desalinet_equals_a_direct_implementation_of_its_rule(relu):
    net, x = ConvReluPoolConv(relu), torch.rand(3, 1, 12, 12)
    raw = reconstruct(net, x, "desalinet", layer="conv2")
    expected = direct_reversal(net, x, DESALINET)
    assert expected.abs().max() > 0
    assert torch.allclose(raw, expected, atol=1e-6)
    assert np.allclose(create("visualizer", "desalinet")(net, x, layer="conv2"), normalise(expected[:, 0]), atol=1e-5)


def test_one_channel_and_the_top_channel_keep_only_that_channel():
    net, x = ConvReluPoolConv(), torch.rand(2, 1, 12, 12)
    keep = torch.zeros(1, 5, 1, 1)
    keep[0, 3] = 1
    expected = direct_reversal(net, x, DESALINET, keep)
    assert torch.allclose(reconstruct(net, x, "desalinet", "conv2", channel=3), expected, atol=1e-6)
    with torch.no_grad():
        top = net(x).flatten(2).amax(2).argmax(1)
    top_keep = F.one_hot(top, 5).float()[..., None, None]
    assert torch.allclose(reconstruct(net, x, "desalinet", "conv2", channel="top"),
                          direct_reversal(net, x, DESALINET, top_keep), atol=1e-6)


def test_deconvnet_and_relu6_follow_their_rules():
    net, x = ConvReluPoolConv("module"), torch.rand(2, 1, 12, 12)
    assert torch.allclose(reconstruct(net, x, "deconvnet", "conv2"), direct_reversal(net, x, DECONVNET), atol=1e-6)
    six = ConvReluPoolConv("module", nn.ReLU6)
    with torch.no_grad():
        six.conv1.weight.mul_(40)  # push some activations above 6 so the upper switch matters
    assert torch.allclose(reconstruct(six, x, "desalinet", "conv2"), direct_reversal(six, x, DESALINET), atol=1e-4)


class NoRelu(nn.Module):
    def __init__(self, relu=False):
        super().__init__()
        torch.manual_seed(1)
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, 3)
        self.relu = relu

    def forward(self, x):
        x = self.conv1(x)
        x = F.max_pool2d(F.relu(x) if self.relu else x, 2)
        return self.fc(self.conv2(x).flatten(1))


def test_deconvnet_and_saliency_differ_only_in_the_relu_rule():
    x = torch.rand(3, 1, 12, 12)
    linear = NoRelu(relu=False)
    from_score = dict(target=2, seed="gradient")
    deconv = reconstruct(linear, x, "deconvnet", **from_score)
    salient = reconstruct(linear, x, "saliency", **from_score)
    assert torch.equal(deconv, salient)  # without a ReLU nothing else differs
    saliency_map = create("visualizer", "saliency")(linear, x, target=2)
    assert np.allclose(saliency_map, normalise(deconv.abs().amax(dim=1)), atol=1e-6)
    with_relu = NoRelu(relu=True)
    xi = x.clone().requires_grad_(True)
    autograd = torch.autograd.grad(with_relu(xi)[:, 2].sum(), xi)[0]
    assert torch.allclose(reconstruct(with_relu, x, "saliency", **from_score), autograd, atol=1e-6)
    assert not torch.allclose(reconstruct(with_relu, x, "deconvnet", **from_score), autograd, atol=1e-3)


def test_guided_backprop_starts_at_the_class_score_and_matches_captum():
    import captum.attr as captum
    net, x = NoRelu(relu=True), torch.rand(2, 1, 12, 12)
    net.relu_module = nn.ReLU()
    net.relu = False
    net.forward = lambda t: net.fc(net.conv2(F.max_pool2d(net.relu_module(net.conv1(t)), 2)).flatten(1))
    ours = reconstruct(net, x, "guided-backprop", target=1, seed="gradient")
    theirs = captum.GuidedBackprop(net).attribute(x, target=1)
    assert torch.allclose(ours, theirs, atol=1e-6)
    top = create("visualizer", "guided-backprop")(net, x)  # no target: each image's top class
    with torch.no_grad():
        predicted = net(x).argmax(1)
    per_image = [normalise(reconstruct(net, x[i:i + 1], "guided-backprop", target=int(c), seed="gradient")[:, 0])
                 for i, c in enumerate(predicted)]
    assert np.allclose(top, np.concatenate(per_image), atol=1e-6)


def test_rule_is_undone_even_when_the_pass_fails():
    net = ConvReluPoolConv("module")
    original = F.relu, torch.relu, torch.Tensor.relu_

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    broken = nn.Sequential(net, Boom())
    with pytest.raises(RuntimeError, match="boom"):
        reconstruct(broken, torch.rand(1, 1, 12, 12), "desalinet", layer="1")
    assert (F.relu, torch.relu, torch.Tensor.relu_) == original
    assert "forward" not in net.relu.__dict__ and not net.relu._forward_hooks and not broken[1]._forward_hooks
    with pytest.raises(TxkitError, match="unknown ReLU rule"):
        with relu_rule(net, "nope"):
            pass


def test_registered_and_module_import_is_light():
    names = registry("visualizer").names()
    assert {"desalinet", "deconvnet", "guided-backprop", "frequency-response"} <= set(names)
    assert registry("visualizer").get("desalinet").provided_by == "txkit-desalinet"
    code = ("import sys, json, txkit, txkit_desalinet; txkit.registry('visualizer'); "
            "print(json.dumps('torch' in sys.modules))")
    env = {**os.environ, "TXKIT_PLUGINS": "txkit-desalinet"}  # other plugins may import torch themselves
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) is False
