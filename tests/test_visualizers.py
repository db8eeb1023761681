"""Core visualizers (saliency, activations, filters, colorizer-output), overlays, layer choice, the
`txkit visualize` command, and: every registered visualizer leaves the network exactly as it found it."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

from faults import assert_one_line_error
from helpers import run_txkit
from txkit.backbones.base import Backbone
from txkit.cli.main import TxkitGroup
from txkit.cli.visualize import visualize_command
from txkit.errors import TxkitError
from txkit.network import TxNet
from txkit.plugins import create, registry
from txkit.visualizers import ReportVisualizer, Visualizer
from txkit.visualizers.base import default_layer, normalise, resolve_layer, target_scores
from txkit.visualizers.overlay import jet_overlay, reconstruction_uint8, tile

torch.set_num_threads(2)
ORIGINAL_RELUS = {(F, "relu"): F.relu, (torch, "relu"): torch.relu, (torch, "relu_"): torch.relu_,
                  (torch.Tensor, "relu"): torch.Tensor.relu, (torch.Tensor, "relu_"): torch.Tensor.relu_}


class TinyModel(nn.Module):
    """conv-BN-ReLU(inplace)-pool, conv with a functional in-place ReLU, conv with Tensor.relu_, head."""

    def __init__(self, classes=3):
        super().__init__()
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = F.max_pool2d(self.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.conv2(x), inplace=True)
        x = self.conv3(x).relu_()
        return self.fc(x.mean(dim=(2, 3)))


def tiny_net(colorizer=None, classes=3):
    torch.manual_seed(0)
    stages = [("stem", ["conv1", "bn1"]), ("block", ["conv2"]), ("top", ["conv3"]), ("head", ["fc"])]
    return TxNet(Backbone(TinyModel(classes), stages, head="fc", first_conv="conv1"), colorizer)


def images(n=2, size=16, seed=1):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def snapshot(net):
    return {"state": {k: v.clone() for k, v in net.state_dict().items()},
            "modes": [m.training for m in net.modules()],
            "flags": [p.requires_grad for p in net.parameters()],
            "grads": [None if p.grad is None else p.grad.clone() for p in net.parameters()],
            "inplace": [getattr(m, "inplace", None) for m in net.modules()]}


def assert_untouched(net, before, x, reference):
    after = snapshot(net)
    assert after["modes"] == before["modes"] and after["flags"] == before["flags"]
    assert after["inplace"] == before["inplace"]
    assert all(torch.equal(before["state"][k], v) for k, v in after["state"].items())
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before["grads"], after["grads"]))
    for module in net.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                    or module._backward_pre_hooks), module
        assert "forward" not in module.__dict__
    assert all(getattr(owner, name) is fn for (owner, name), fn in ORIGINAL_RELUS.items())
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), reference)


def prepared_net():
    """A training-mode net with a colorizer, a frozen stage and leftover parameter gradients."""
    net = tiny_net(create("colorizer", "conv1x1"))
    net.set_trainable({"block", "top", "head"})
    net.train()
    for p in net.parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, 0.5)
    x = images()
    net.eval()
    with torch.no_grad():
        reference = net(x)
    net.train()
    return net, x, reference


@pytest.mark.parametrize("name", registry("visualizer").names())
def test_every_visualizer_leaves_the_network_as_it_found_it(name, tmp_path):
    net, x, reference = prepared_net()
    before = snapshot(net)
    visualizer = registry("visualizer").create(name)
    assert isinstance(visualizer, Visualizer)  # the contract is the base class, not attribute probing
    if isinstance(visualizer, ReportVisualizer):
        visualizer = registry("visualizer").create(name, thetas=2)
        visualizer.write([("tiny", net)], tmp_path, image_size=16)
    else:
        maps = visualizer(net, x)
        assert maps.ndim == 3 and maps.min() >= 0 and maps.max() <= 1
        if visualizer.aligned:
            assert maps.shape == (2, 16, 16)
    assert_untouched(net, before, x, reference)


@pytest.mark.parametrize("name,kwargs", [("saliency", {"target": 7}), ("activations", {"channel": 99}),
                                         ("desalinet", {"channel": 99}), ("gradcam", {"target": 7}),
                                         ("filters", {"layer": "backbone.bn1"}), ("activations", {"layer": "nope"})])
def test_a_failing_visualizer_still_restores_the_network(name, kwargs):
    if name not in registry("visualizer").names():
        pytest.skip(f"{name} is not installed")
    net, x, reference = prepared_net()
    before = snapshot(net)
    with pytest.raises(TxkitError):
        registry("visualizer").create(name)(net, x, **kwargs)
    assert_untouched(net, before, x, reference)


def test_saliency_is_the_input_gradient_of_the_class_score_and_sums_a_multilabel_target():
    net, x = tiny_net().eval(), images()
    grads = []
    for target in (0, 2, [0, 2]):
        xi = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(target_scores(net(xi), target).sum(), xi)[0])
        expected = normalise(grads[-1].abs().amax(dim=1))
        assert np.allclose(create("visualizer", "saliency")(net, x, target=target), expected, atol=1e-6)
    assert torch.allclose(grads[2], grads[0] + grads[1], atol=1e-6)
    with pytest.raises(TxkitError, match="out of range for 3 classes"):
        target_scores(net(x), [0, 3])


def test_activations_choose_each_images_strongest_channel_and_list_the_top_k():
    net, x = tiny_net().eval(), images(3)
    with torch.no_grad():
        act = net.backbone.conv2(F.max_pool2d(net.backbone.relu(net.backbone.bn1(net.backbone.conv1(net.pre(x)))), 2))
    strongest = act.flatten(2).amax(2).argmax(1)
    expected = normalise(F.interpolate(act[torch.arange(3), strongest][:, None], size=(16, 16), mode="bilinear")[:, 0])
    visualizer = create("visualizer", "activations", top_k=4)
    # conv2's output as the layer gave it, before the in-place functional ReLU that follows it
    assert np.allclose(visualizer(net, x, layer="block"), expected, atol=1e-6)
    assert np.allclose(visualizer(net, x, layer="block", channel="top"), expected, atol=1e-6)
    one = normalise(F.interpolate(act[:, 5:6], size=(16, 16), mode="bilinear")[:, 0])
    assert np.allclose(visualizer(net, x, layer="backbone.conv2", channel=5), one, atol=1e-6)
    from txkit.visualizers.activations import channel_maps
    maps, indices = channel_maps(net, x, "block", k=4)
    assert maps.shape == (3, 4, 8, 8) and (indices[:, 0] == strongest.numpy()).all()
    assert np.allclose(maps[:, 0], normalise(act[torch.arange(3), strongest]), atol=1e-6)
    grid = visualizer.extra_images(net, x, layer="block")["top4"]
    assert grid.shape == (3, 2 * 9 + 1, 2 * 9 + 1)


def test_filters_return_one_grid_of_the_first_conv_summed_over_rgb():
    net = tiny_net()
    grid = create("visualizer", "filters")(net, images())
    weight = net.backbone.conv1.weight.detach()
    assert grid.shape == (1, 2 * 4 + 1, 3 * 4 + 1)  # 6 kernels of 3x3 in 2 rows of 3, 1-pixel gaps
    assert np.allclose(grid[0, 1:4, 1:4], normalise(weight.sum(1))[0], atol=1e-6)
    rgb = create("visualizer", "filters").extra_images(net, images())["rgb"]
    assert rgb.shape == (1, 9, 13, 3)
    one_input = create("visualizer", "filters")(net, None, layer="backbone.conv2", channel=1)
    assert np.allclose(one_input[0, 1:4, 1:4], normalise(net.backbone.conv2.weight.detach()[:, 1])[0], atol=1e-6)
    with pytest.raises(TxkitError, match="not a Conv2d"):
        create("visualizer", "filters")(net, None, layer="backbone.bn1")


def test_colorizer_output_shows_the_colorizer_and_needs_one():
    net, x = tiny_net(create("colorizer", "conv1x1")), images()
    visualizer = create("visualizer", "colorizer-output")
    rgb = visualizer.extra_images(net, x)["rgb"]
    with torch.no_grad():
        out = net.colorized(x)  # the same picture `txkit colorize` writes
    assert rgb.shape == (2, 16, 16, 3)
    assert np.allclose(rgb, out.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    assert np.allclose(visualizer(net, x, channel=1), normalise(out[:, 1]), atol=1e-6)
    with pytest.raises(TxkitError, match="no colorizer"):
        visualizer(tiny_net(), x)


def test_overlay_is_transparent_at_or_below_the_threshold_and_jet_above():
    gray = np.full((4, 4), 0.5)
    heat = np.zeros((4, 4))
    heat[0, 0], heat[1, 1] = 1.0, 0.3
    out = jet_overlay(gray, heat, threshold=0.3, alpha=1.0)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert (out[1:, 1:] == 128).all() and (out[1, 1] == 128).all()
    assert tuple(out[0, 0]) == (128, 0, 0)  # jet(1.0) is dark red
    raw = np.array([[-2.0, 0.0], [1.0, 6.0]])
    assert reconstruction_uint8(raw).tolist() == [[0, 64], [96, 255]]
    assert tile(np.zeros((5, 2, 2)), columns=3).shape == (7, 10)


def test_layers_resolve_by_path_relative_path_and_stage_with_a_suggestion():
    net = tiny_net()
    assert resolve_layer(net, "backbone.conv2") == "backbone.conv2"
    assert resolve_layer(net, "conv2") == "backbone.conv2"
    assert resolve_layer(net, "stem") == "backbone.bn1"
    with pytest.raises(TxkitError, match="did you mean 'backbone.conv3'"):
        resolve_layer(net, "backbone.conv33")
    assert default_layer(net, images()) == "backbone.conv3"
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.Flatten(), nn.LazyLinear(2))
    plain(images())
    assert default_layer(plain, images()) == "2"


# --- the command ----------------------------------------------------------------------------------------
def invoke(*args):
    group = TxkitGroup(commands={"visualize": visualize_command})
    return CliRunner().invoke(group, ["visualize", *map(str, args)])


@pytest.fixture(scope="module")
def run_dirs(module_tmp):
    """Two finished-looking run directories (config.json + model.safetensors) of resnet18 at 32 px."""
    from txkit.training.build import build_network
    from txkit.config import TrainConfig
    from txkit.storage import write_json
    from txkit.training.checkpoint import save_tensors

    root = module_tmp("runs")
    dirs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch")
        net = build_network(cfg, 2, create("strategy", "scratch"))
        run = root / f"run{seed}"
        run.mkdir()
        save_tensors(run / "model.safetensors", net.state_dict())
        write_json(run / "config.json", {"config": cfg.to_dict(), "resolved": {
            "num_classes": 2, "classes": ["normal", "abnormal"], "image_size": 32, "task": "multiclass"}})
        dirs.append(run)
    return dirs


@pytest.fixture(scope="module")
def odd_image(module_tmp):
    path = module_tmp("img") / "odd size.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_visualize_one_run_writes_input_map_and_overlay(run_dirs, odd_image, tmp_path):
    result = invoke(run_dirs[0], "--method", "saliency", "--image", odd_image, "--target", "abnormal",
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    # issue 12.9: at the image's resolution (37 x 50 enlarged to a 224-pixel short side), under a title band
    for suffix in ("input", "saliency", "saliency_overlay"):
        picture = np.asarray(Image.open(tmp_path / f"odd size_{suffix}.png"))
        assert picture.shape[1] == 303 and picture.shape[0] > 224 and picture.shape[2] == 3


def test_several_runs_make_one_comparison_grid_with_a_column_per_run(run_dirs, odd_image, tmp_path):
    result = invoke(*run_dirs, "--method", "activations", "--image", odd_image, "--image", odd_image,
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "compare_activations.png").exists()
    for run in ("run0", "run1"):
        assert (tmp_path / run / "odd size_activations_overlay.png").exists()
        assert (tmp_path / run / "odd size-2_activations_top16.png").exists()


def test_filters_need_no_image_and_list_layers_marks_the_default(run_dirs, tmp_path):
    result = invoke(run_dirs[0], "--method", "filters", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "filters.png").exists() and (tmp_path / "filters_rgb.png").exists()
    from_file = invoke("--backbone", "resnet18", "--weights", run_dirs[1], "--method", "filters",
                       "--out", tmp_path / "b")
    assert from_file.exit_code == 0, from_file.output
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "filters.png")),
                              np.asarray(Image.open(tmp_path / "b" / "filters.png")))  # run1's weights, not run0's
    listing = invoke("--backbone", "resnet18", "--weights", "none", "--list-layers")
    assert listing.exit_code == 0, listing.output
    assert "backbone.layer4 " in listing.output and "<- default" in listing.output
    assert "backbone.layer4.1.conv2" in listing.output


def test_unknown_method_and_bad_arguments_are_one_line_errors(run_dirs, odd_image):
    result = invoke(run_dirs[0], "--method", "salency", "--image", odd_image)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: no visualizer named 'salency'; did you mean 'saliency'?"]
    for args, message in [(["--method", "saliency"], "needs at least one --image"),
                          (["--method", "saliency", "--image", odd_image, "--target", "cat"], "classes are: normal"),
                          (["--method", "colorizer-output", "--image", odd_image], "no colorizer"),
                          (["--method", "activations", "--image", odd_image, "--layer", "layer9"], "no layer named")]:
        result = invoke(run_dirs[0], *args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert "give one or more RUN_DIRs" in invoke("--method", "saliency").output


def test_cli_module_does_not_import_torch():
    code = "import sys, txkit.cli.visualize; print(json.dumps('torch' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


# --- issue 12: the typed contract, the library pipeline, readable outputs ---------------------------------
class Brightness(Visualizer):
    """Only what the contract requires: a name and __call__ (no extra_images, heat, layer_for...)."""

    name = "brightness"

    def __call__(self, net, images, layer=None, target=None, channel=None):
        return normalise(images[:, 0])


def test_a_subclass_with_only_the_required_method_goes_through_the_library_pipeline(odd_image, tmp_path, capsys):
    from txkit.visualizers import Subject, visualize

    subject = Subject("tiny", tiny_net(), 16, ["a", "b", "c"])
    result = visualize(subject, Brightness(), [odd_image], out=tmp_path)
    assert capsys.readouterr() == ("", "")  # returns, prints nothing
    assert result.files == [tmp_path / f"odd size_{s}.png" for s in ("input", "brightness", "brightness_overlay")]
    assert all(p.exists() for p in result.files)
    outcome = result.subjects[0]
    assert outcome.layer == "backbone.conv3" and outcome.layer_shape == (8, 8, 8) and result.warnings == []
    assert outcome.maps.shape == (1, 16, 16) and outcome.classes[0] in ("a", "b", "c") and 0 < outcome.scores[0] < 1
    assert outcome.pictures[0]["overlay"].shape == (224, 303, 3)
    arrays_only = visualize(subject, Brightness(), [odd_image], out=None, target="b")
    assert arrays_only.files == [] and arrays_only.subjects[0].classes == ["b"]
    with pytest.raises(TypeError):
        type("NoCall", (Visualizer,), {"name": "x"})()  # __call__ is the one abstract method


def test_library_pipeline_refuses_an_object_that_is_not_a_visualizer(monkeypatch, odd_image):
    import txkit.plugins
    from txkit.visualizers import visualize

    monkeypatch.setattr(txkit.plugins, "create", lambda kind, name, **_: object())
    with pytest.raises(TxkitError, match="not a txkit.visualizers.Visualizer subclass"):
        visualize(tiny_net(), "saliency", [odd_image], out=None)


def test_png_is_at_least_the_input_resolution_with_a_title_band(run_dirs, tmp_path):
    from txkit.visualizers import visualize

    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (260, 300), dtype=np.uint8)).save(big)
    result = visualize(run_dirs[0], "saliency", [big], target="abnormal", out=tmp_path / "out")
    assert result.subjects[0].classes == ["abnormal"] and result.subjects[0].layer is None
    for path in result.files:
        picture = np.asarray(Image.open(path).convert("L"))
        height, width = picture.shape
        assert width == 300 and height > 260  # the image's own 300 x 260 pixels under the title
        band = picture[: height - 260]
        assert band.max() == 255 and band.min() < 100  # white band with dark title text


def test_a_coarse_layer_gives_a_warning_and_a_fine_one_none(run_dirs, odd_image, tmp_path):
    from txkit.visualizers import visualize

    coarse = visualize(run_dirs[0], "activations", [odd_image], out=None)  # layer3 of resnet18 at 32 px: 2 x 2
    assert coarse.subjects[0].layer == "backbone.layer3"
    assert len(coarse.warnings) == 1 and "backbone.layer3 is only 2x2" in coarse.warnings[0]
    fine = visualize(run_dirs[0], "activations", [odd_image], layer="layer1", out=None)  # 8 x 8
    assert fine.warnings == [] and fine.subjects[0].layer_shape == (64, 8, 8)
    result = invoke(run_dirs[0], "--method", "activations", "--image", odd_image, "--out", tmp_path)
    assert result.exit_code == 0 and "warning: layer backbone.layer3 is only 2x2" in result.output


def test_filters_with_an_image_is_a_one_line_error_naming_the_option(run_dirs, odd_image):
    result = run_txkit("visualize", str(run_dirs[0]), "--method", "filters", "--image", str(odd_image))
    assert_one_line_error(result, "--image", "filters")


def test_the_facade_is_import_light():
    code = ("import sys, json, txkit.visualizers as v; assert v.Visualizer and v.ReportVisualizer; "
            "print(json.dumps(['torch' in sys.modules, 'numpy' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False]
    import txkit.visualizers as facade
    from txkit.visualizers import base, overlay
    assert facade.default_layer is base.default_layer and facade.reconstruction_heat is overlay.reconstruction_heat
    assert all(getattr(facade, name) is not None for name in facade.__all__)
