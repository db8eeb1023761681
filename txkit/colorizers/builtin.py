"""txkit's own colorizers, registered through the plugin hook."""

from txkit.hookspecs import hookimpl

_F = "txkit.colorizers.factories"
_NONE = "txkit.options:NoOptions"  # takes no options


@hookimpl
def register_colorizers(register):
    register("repeat", f"{_F}:repeat", "fixed: the gray channel copied to R, G and B", options=_NONE)
    register("window", f"{_F}:window", "fixed: one CT window (level:width in HU) per channel",
             options=f"{_F}:WindowOptions")
    register("conv1x1", f"{_F}:conv1x1", "learned linear 1->3 channel map (6 parameters)", options=_NONE)
    register("deconv", f"{_F}:deconv", "learned: residual stem + grouped transposed conv (thesis DECONV, 596,611)",
             options=_NONE)
    register("resizeconv", f"{_F}:resizeconv", "learned: residual stem + nearest resize + conv (596,503)",
             options=_NONE)
    register("pixelshuffle", f"{_F}:pixelshuffle",
             "learned: residual stem + ICNR sub-pixel conv + blur (thesis PixelShuffle, 599,440)", options=_NONE)
    register("coloru", f"{_F}:coloru", "learned: small U-Net (thesis ColorU after ColorUNet, 192,659)",
             options=_NONE)
