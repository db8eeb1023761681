"""Class activation maps from pytorch-grad-cam (PyPI ``grad-cam``), wrapped to txkit's visualizer contract.

Python API::

    from txkit_gradcam.cams import cam_maps
    maps = cam_maps("gradcam", net, images, layer="backbone.layer4", target=[2, 5])   # (N, H, W)

``layer`` defaults to :func:`txkit.default_layer` (the last conv stage before the head:
``layer4`` for ResNets, ``bn2`` for EfficientNet, pool5 for AlexNet/VGG, ``norm5`` for DenseNet).
``target``: a class, a list of classes (multi-label: the CAM of the sum of their logits) or None (each
image's top class). EigenCAM is class-agnostic (first principal component of the layer).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from txkit import TxkitError, Visualizer, default_layer, preserved, resolve_layer, target_classes

METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
SCORECAM_BATCH = 32


class ClassScore:
    """pytorch-grad-cam target: one image's logit of a class, or the sum over a multi-label set."""

    def __init__(self, classes: list[int]):
        self.classes = classes

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        count = output.shape[-1]
        bad = [c for c in self.classes if not 0 <= c < count]
        if bad:
            raise TxkitError(f"--target {bad[0]} is out of range for {count} classes")
        return output[..., self.classes].sum(dim=-1)


def cam_targets(target, count: int) -> list[ClassScore] | None:
    classes = target_classes(target)
    return None if classes is None else [ClassScore(classes) for _ in range(count)]


@contextmanager
def _quiet_scorecam():
    """ScoreCAM prints a tqdm bar per image; swap its progress bar for a plain iterator meanwhile."""
    from types import SimpleNamespace

    from pytorch_grad_cam import score_cam

    original = score_cam.tqdm
    score_cam.tqdm = SimpleNamespace(tqdm=lambda iterable, **_: iterable)
    try:
        yield
    finally:
        score_cam.tqdm = original


def cam_maps(method: str, net, images: torch.Tensor, layer: str | None = None, target=None) -> np.ndarray:
    """(N, H, W) in [0, 1]: the CAM of ``method`` for each image; the network is left as it was."""
    import pytorch_grad_cam

    if method not in METHODS:
        raise TxkitError(f"unknown CAM method {method!r}; methods are: {', '.join(METHODS)}")
    path = resolve_layer(net, layer) if layer else default_layer(net, images)
    with preserved(net), _quiet_scorecam():
        cam = getattr(pytorch_grad_cam, METHODS[method])(model=net, target_layers=[net.get_submodule(path)])
        cam.batch_size = SCORECAM_BATCH
        cam.compute_input_gradient = True  # gradients reach the layer although the parameters are frozen
        try:
            maps = cam(input_tensor=images.detach(), targets=cam_targets(target, len(images)))
        except ValueError as exc:
            if "shape" not in str(exc):
                raise
            raise TxkitError(f"layer {path!r} has no spatial (N, C, h, w) output; {method} needs a convolutional "
                             f"layer (`txkit visualize --list-layers`)") from None
        finally:
            cam.activations_and_grads.release()
    return np.clip(np.nan_to_num(maps.astype(np.float64)), 0.0, 1.0)


class Cam(Visualizer):
    """A CAM method as a txkit visualizer: the layer's weighted activation upsampled to the input."""

    def __init__(self, name: str):
        self.name = name
        self.uses_target = name != "eigencam"  # EigenCAM is class-agnostic

    def __call__(self, net, images: torch.Tensor, layer=None, target=None, channel=None) -> np.ndarray:
        return cam_maps(self.name, net, images, layer, target)


def gradcam(**_) -> Cam:
    return Cam("gradcam")


def gradcam_plusplus(**_) -> Cam:
    return Cam("gradcam++")


def xgradcam(**_) -> Cam:
    return Cam("xgradcam")


def layercam(**_) -> Cam:
    return Cam("layercam")


def eigencam(**_) -> Cam:
    return Cam("eigencam")


def scorecam(**_) -> Cam:
    return Cam("scorecam")
