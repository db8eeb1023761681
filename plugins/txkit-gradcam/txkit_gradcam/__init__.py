"""txkit-gradcam: Grad-CAM and its family from pytorch-grad-cam, for every txkit backbone.

This module only registers entries (txkit imports it to list plugins); torch and pytorch_grad_cam are
imported when an entry is used (``txkit_gradcam.cams``).
"""

from txkit import hookimpl

_C = "txkit_gradcam.cams"
_NONE = "txkit:NoOptions"


@hookimpl
def register_visualizers(register):
    register("gradcam", f"{_C}:gradcam", "Grad-CAM (Selvaraju 2017): gradient-weighted activations of a layer",
             options=_NONE)
    register("gradcam++", f"{_C}:gradcam_plusplus", "Grad-CAM++ (Chattopadhyay 2018): higher-order gradient weights",
             options=_NONE)
    register("xgradcam", f"{_C}:xgradcam", "XGrad-CAM (Fu 2020): axiom-based gradient weights", options=_NONE)
    register("layercam", f"{_C}:layercam", "LayerCAM (Jiang 2021): element-wise positive-gradient weights",
             options=_NONE)
    register("eigencam", f"{_C}:eigencam",
             "EigenCAM (Muhammad 2020): gradient-free, first principal component of a layer (class-agnostic)",
             options=_NONE)
    register("scorecam", f"{_C}:scorecam",
             "Score-CAM (Wang 2020): gradient-free, each channel weighted by the score of the masked input (slow)",
             options=_NONE)
