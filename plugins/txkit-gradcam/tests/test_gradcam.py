"""Grad-CAM family through pytorch-grad-cam: a real ImageNet check, every backbone, layers and targets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from txkit import TxkitError, create, default_layer, network_from_weights, registry
from txkit_gradcam.cams import cam_maps

torch.set_num_threads(2)

EGYPTIAN_CAT = 285
# skimage.data.chelsea() is 300 x 451 (rows x columns). Measured by eye on the picture with a 50-pixel grid
# drawn over it: the cat's head (ears, eyes, nose, muzzle and cheek fur) spans columns 45-375 and every
# row; right of column 375 is the blurred background (upper right) and the out-of-focus body.
CAT_HEAD_ROWS, CAT_HEAD_COLUMNS = (0, 300), (45, 375)


@pytest.fixture(scope="module")
def chelsea_gray():
    import skimage.data as skimage_data
    from skimage.color import rgb2gray

    gray = torch.from_numpy(rgb2gray(skimage_data.chelsea())).float()[None, None]
    return F.interpolate(gray, size=(224, 336), mode="bilinear", align_corners=False)  # keeps the aspect


@pytest.fixture(scope="module")
def imagenet_lite0():
    return network_from_weights("efficientnet_lite0", "imagenet")  # the 1000-class ImageNet head restored


def to_original(cam):
    return F.interpolate(torch.from_numpy(cam)[None, None].float(), size=(300, 451), mode="bilinear")[0, 0].numpy()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_peak_for_egyptian_cat_is_on_the_cat(method, chelsea_gray, imagenet_lite0):
    with torch.no_grad():
        assert int(imagenet_lite0(chelsea_gray).argmax()) in (281, 282, 285)  # tabby / tiger / Egyptian cat
    cam = to_original(create("visualizer", method)(imagenet_lite0, chelsea_gray, target=EGYPTIAN_CAT)[0])
    row, column = np.unravel_index(cam.argmax(), cam.shape)
    assert CAT_HEAD_ROWS[0] <= row < CAT_HEAD_ROWS[1] and CAT_HEAD_COLUMNS[0] <= column < CAT_HEAD_COLUMNS[1]
    head = np.zeros(cam.shape, bool)
    head[slice(*CAT_HEAD_ROWS), slice(*CAT_HEAD_COLUMNS)] = True
    assert cam[head].mean() > 2 * cam[~head].mean()


def test_default_layer_of_gradcam_on_lite0_is_the_last_conv_stage(chelsea_gray, imagenet_lite0):
    assert default_layer(imagenet_lite0, chelsea_gray) == "backbone.bn2"


# At 64 px AlexNet's pool5 (features.12) is 1 x 1, so the default falls back to conv5's ReLU (features.11);
# at 224 px it is pool5. MobileNetV3's conv_head comes after global pooling, so its last block is chosen.
EXPECTED_LAYERS = {"alexnet": "backbone.features.11", "vgg16": "backbone.features.30",
                   "vgg19": "backbone.features.36", "resnet18": "backbone.layer4", "resnet50": "backbone.layer4",
                   "densenet121": "backbone.features.norm5", "efficientnet_lite0": "backbone.bn2",
                   "cxrnet": "backbone.features.12", "timm/mobilenetv3_small_050": "backbone.blocks.5"}


@pytest.mark.parametrize("backbone", sorted(EXPECTED_LAYERS))
def test_every_builtin_backbone_gets_a_map_at_its_default_layer(backbone):
    net = network_from_weights(backbone, "none", num_classes=3)  # random weights, in eval mode
    x = torch.rand(1, 1, 64, 64)
    assert default_layer(net, x) == EXPECTED_LAYERS[backbone]
    maps = create("visualizer", "gradcam")(net, x, target=1)
    assert maps.shape == (1, 64, 64) and np.isfinite(maps).all() and 0 <= maps.min() and maps.max() <= 1


def test_builtin_list_is_covered():
    listed = {n for n in registry("backbone").names() if not n.endswith("*")}
    assert listed <= set(EXPECTED_LAYERS)


def small_net():
    torch.manual_seed(0)
    return network_from_weights("resnet18", "none", num_classes=4)


def hand_gradcam(net, x, layer, classes):
    """Grad-CAM by hand: channel weights = spatial mean of d(score)/d(activation); relu of the weighted sum."""
    captured = {}
    handle = net.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    try:
        logits = net(x.requires_grad_(True))
    finally:
        handle.remove()
    activation = captured["a"]
    grads = torch.autograd.grad(logits[:, classes].sum(), activation)[0]
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * activation).sum(1)).detach()
    return cam


def test_any_layer_and_a_multilabel_target_match_grad_cam_by_hand():
    net, x = small_net(), torch.rand(2, 1, 64, 64)
    for layer, classes in [("backbone.layer3", [1]), ("layer4", [0, 2])]:
        path = "backbone.layer4" if layer == "layer4" else layer
        target = classes[0] if len(classes) == 1 else classes
        ours = cam_maps("gradcam", net, x, layer=layer, target=target)
        expected = hand_gradcam(net, x.clone(), path, classes)
        small = F.interpolate(torch.from_numpy(ours)[:, None].float(), size=expected.shape[-2:], mode="area")[:, 0]
        for a, b in zip(small, expected):
            assert np.corrcoef(a.flatten(), b.flatten())[0, 1] > 0.95
    single = cam_maps("gradcam", net, x, target=0)
    joint = cam_maps("gradcam", net, x, target=[0, 2])
    assert not np.allclose(single, joint)


@pytest.mark.parametrize("method", ["gradcam++", "xgradcam", "layercam", "eigencam"])
def test_family_members_give_unit_maps(method):
    maps = create("visualizer", method)(small_net(), torch.rand(2, 1, 48, 48), target=3)
    assert maps.shape == (2, 48, 48) and maps.max() <= 1 and maps.min() >= 0 and maps.max() > 0


def test_scorecam_is_gradient_free_and_runs_on_a_small_layer():
    net = small_net()
    maps = create("visualizer", "scorecam")(net, torch.rand(1, 1, 32, 32), layer="backbone.layer1.0.conv1", target=1)
    assert maps.shape == (1, 32, 32)


def test_bad_target_or_layer_is_a_one_line_error():
    with pytest.raises(TxkitError, match="out of range for 4 classes"):
        create("visualizer", "gradcam")(small_net(), torch.rand(1, 1, 32, 32), target=[1, 9])
    with pytest.raises(TxkitError, match="no spatial"):
        create("visualizer", "gradcam")(small_net(), torch.rand(1, 1, 32, 32), layer="fc")


def test_registered_and_module_import_is_light():
    assert registry("visualizer").get("gradcam").provided_by == "txkit-gradcam"
    code = ("import sys, json, txkit, txkit_gradcam; txkit.registry('visualizer'); "
            "print(json.dumps('torch' in sys.modules))")
    env = {**os.environ, "TXKIT_PLUGINS": "txkit-gradcam"}  # other plugins may import torch themselves
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) is False
