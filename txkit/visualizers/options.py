"""Options of txkit's own visualizers (``txkit visualize --visualizer-option KEY=VALUE``); imports no torch."""

from pydantic import Field

from txkit.options import Options

DEFAULT_TOP_K = 16


class ActivationsOptions(Options):
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=1024,
                       description="Channels in the grid of the strongest channels (activations_topK.png).")
