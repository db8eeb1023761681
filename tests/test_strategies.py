"""Each strategy freezes exactly what it should: parameter counts and which parameters get gradients."""

import pytest
import torch

from txkit.strategies.base import Phase
from txkit.training.build import build_network, build_strategy
from txkit.config import TrainConfig
from txkit.training.inspection import inspect_model
from txkit.training.optim import param_groups


def network(strategy, backbone="resnet18", colorizer=None, num_classes=5, phase=0, freeze_colorizer=False):
    cfg = TrainConfig(backbone=backbone, strategy=strategy, colorizer=colorizer, weights="none",
                      freeze_colorizer=freeze_colorizer)
    s = build_strategy(cfg)
    torch.manual_seed(0)
    net = build_network(cfg, num_classes, s, load_weights=False)
    trainable = s.trainable(s.phases[phase], net.stage_names(), not freeze_colorizer)
    net.set_trainable(trainable)
    return net, s, trainable


def gradients_flow_only_to(net, stages, size=64):
    net.train()
    net.zero_grad(set_to_none=True)
    net(torch.rand(2, 1, size, size)).sum().backward()
    for stage, params in net.stage_parameters().items():
        for name, p in params:
            assert (p.grad is not None) == (stage in stages), f"{name} in {stage}"


def count(net, trainable_only=True):
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def test_last_layer_resnet18_five_classes_is_2565():
    net, _, stages = network("last-layer")
    assert stages == {"fc"} and count(net) == 2565
    gradients_flow_only_to(net, {"fc"})


@pytest.mark.parametrize("strategy", ["full", "scratch"])
def test_full_and_scratch_train_everything(strategy):
    net, s, stages = network(strategy)
    assert count(net) == count(net, trainable_only=False) == 11_179_077
    assert s.pretrained == (strategy == "full")
    gradients_flow_only_to(net, set(net.stage_names()))


@pytest.mark.parametrize("start, expected", [("layer3", {"layer3", "layer4", "fc"}), ("stem", None), ("fc", {"fc"})])
def test_finetune_from_trains_from_the_stage_to_the_head(start, expected):
    net, _, stages = network(f"finetune-from:{start}")
    expected = expected or set(net.stage_names())
    assert stages == expected
    gradients_flow_only_to(net, expected)


def test_finetune_from_alexnet_fc7_uses_tajbakhsh_learning_rates():
    net, s, stages = network("finetune-from:fc7", backbone="alexnet")
    assert stages == {"fc7", "fc8"}
    assert count(net) == 4096 * 4096 + 4096 + 4096 * 5 + 5
    groups = {g["name"]: g["lr"] for g in param_groups(net, s, 1e-3, 0.0)}
    assert groups == pytest.approx({"weight": 1e-3, "bias": 2e-3, "head_weight": 1e-2, "head_bias": 2e-2})


def test_finetune_from_conv3_keeps_head_lr_unscaled():
    net, s, stages = network("finetune-from:conv3", backbone="vgg16")
    assert stages == {"conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}
    groups = {g["name"]: g["lr"] for g in param_groups(net, s, 1e-3, 0.0)}
    assert groups["head_weight"] == pytest.approx(1e-3) and groups["bias"] == pytest.approx(2e-3)


def test_finetune_from_unknown_stage_lists_the_stages():
    with pytest.raises(Exception, match="finetune-from takes one of: stem, layer1, layer2, layer3, layer4, fc"):
        network("finetune-from:conv9")


def test_frozen_batchnorm_keeps_its_statistics():
    net, _, _ = network("finetune-from:layer4")
    before = net.backbone.bn1.running_mean.clone()
    layer4_before = net.backbone.layer4[0].bn1.running_mean.clone()
    net.train()
    net(torch.rand(4, 1, 64, 64))
    assert torch.equal(net.backbone.bn1.running_mean, before)
    assert not torch.equal(net.backbone.layer4[0].bn1.running_mean, layer4_before)


def test_gradual_unfreeze_adds_the_deepest_frozen_stage():
    net, s, stages = network("gradual-unfreeze")
    assert stages == {"fc"}
    grown = s.next_unfrozen(stages, net.stage_names())
    assert grown == {"fc", "layer4"}
    assert s.next_unfrozen(grown, net.stage_names()) == {"fc", "layer4", "layer3"}


@pytest.mark.parametrize("colorizer, backbone, trainable", [
    ("deconv", "resnet18", 599_176), ("pixelshuffle", "resnet18", 602_005), ("coloru", "resnet18", 195_224),
    ("deconv", "densenet121", 601_736), ("pixelshuffle", "densenet121", 604_565), ("coloru", "densenet121", 197_784),
])
def test_colorizer_mode1_counts_match_thesis_table_4_3(colorizer, backbone, trainable):
    report = inspect_model(TrainConfig(backbone=backbone, colorizer=colorizer, strategy="colorizer"), 5)
    assert report["trainable"] == trainable


def test_colorizer_mode1_gradients_reach_colorizer_and_head_only():
    net, _, stages = network("colorizer", colorizer="pixelshuffle")
    assert stages == {"colorizer", "fc"}
    gradients_flow_only_to(net, stages)


def test_colorizer_strategy_without_colorizer_says_what_to_pass():
    with pytest.raises(Exception, match="pass `colorizer` NAME"):
        network("colorizer")


def test_last_layer_with_colorizer_from_another_run_freezes_it():
    net, _, stages = network("full", colorizer="coloru", freeze_colorizer=True)
    assert "colorizer" not in stages
    gradients_flow_only_to(net, set(net.stage_names()) - {"colorizer"})


def test_colorizer_then_full_phase_two_trains_everything():
    net, s, stages = network("colorizer-then-full", colorizer="deconv", phase=1)
    assert [p.name for p in s.phases] == ["mode1", "mode2"] and s.phases[1].reinit_head
    assert stages == set(net.stage_names())


def test_every_parameter_belongs_to_a_stage_of_every_builtin_backbone():
    for backbone in ("alexnet", "vgg16", "resnet18", "densenet121", "efficientnet_lite0", "cxrnet"):
        net, _, _ = network("full", backbone=backbone)
        staged = {name for params in net.stage_parameters().values() for name, _ in params}
        assert staged == {name for name, _ in net.named_parameters()}
        listed = {p for _, paths in net.stages() for p in paths}
        for path in listed:
            net.get_submodule(path)  # every listed module exists


def test_unknown_phase_rule_is_rejected():
    s = build_strategy(TrainConfig(strategy="full"))
    with pytest.raises(Exception, match="unknown phase rule"):
        s.trainable(Phase("x", "sideways"), ["stem", "fc"])
