"""txkit's own visualizers, registered through the plugin hook."""

from txkit.hookspecs import hookimpl

_V = "txkit.visualizers"
_NONE = "txkit.options:NoOptions"  # takes no options


@hookimpl
def register_visualizers(register):
    register("saliency", f"{_V}.saliency:saliency",
             "gradient of the class score w.r.t. the input, max |gradient| over channels (Simonyan 2014)",
             options=_NONE)
    register("activations", f"{_V}.activations:activations",
             "a layer's channel activations: the strongest (or --channel) channel as a heat map, plus a grid "
             "of the top-k channels (Sivaramakrishnan 2018)", options=f"{_V}.options:ActivationsOptions")
    register("filters", f"{_V}.filters:filters",
             "kernel grid of the first conv (or --layer conv); one grid image, not per input image", options=_NONE)
    register("colorizer-output", f"{_V}.colorizer_output:colorizer_output_visualizer",
             "the 3-channel output of the network's colorizer (needs a run trained with a colorizer)", options=_NONE)
