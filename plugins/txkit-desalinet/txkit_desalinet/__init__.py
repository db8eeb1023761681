"""txkit-desalinet: the DeconvNet / guided-backprop / DeSaliNet family and the frequency response.

This module only registers entries (txkit imports it to list plugins); torch is imported by the
factories in ``txkit_desalinet.reversal`` and ``txkit_desalinet.frequency`` when an entry is used.
"""

from txkit import hookimpl

_R = "txkit_desalinet.reversal"
_NONE = "txkit:NoOptions"


@hookimpl
def register_visualizers(register):
    register("desalinet", f"{_R}:desalinet",
             "DeSaliNet (Mahendran & Vedaldi): a layer's activation reversed to the input, ReLU rule relu(r*[x>0])",
             options=_NONE)
    register("deconvnet", f"{_R}:deconvnet",
             "DeconvNet (Zeiler & Fergus): a layer's activation reversed to the input, ReLU rule relu(r)",
             options=_NONE)
    register("guided-backprop", f"{_R}:guided_backprop",
             "guided backprop (Springenberg): gradient of the class score (or kept units), rule relu(r*[x>0])",
             options=_NONE)
    register("frequency-response", "txkit_desalinet.frequency:frequency_response_visualizer",
             "G(omega) of a layer under DeSaliNet for cosine gratings (Suzuki 2018 Eq. 8); CSV + PNG, runs on one plot",
             options="txkit_desalinet.options:FrequencyOptions")
