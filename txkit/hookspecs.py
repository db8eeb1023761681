"""The hook specifications a txkit plugin implements.

These signatures are txkit's stable plugin API. Every hook receives a ``register`` callable::

    register(name, factory, description="")

``factory`` is a callable, or an ``"package.module:function"`` string that is imported only when the entry
is used, so listing plugins never imports torch. A name ending in ``*`` registers a family: ``timm/*``
answers ``timm/convnext_tiny`` and its factory receives the part matched by ``*`` as ``variant=``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("txkit")
hookimpl = pluggy.HookimplMarker("txkit")


@hookspec
def register_backbones(register):
    """Register backbones. ``factory(num_classes, pretrained=False, **options) -> txkit.backbones.Backbone``."""


@hookspec
def register_colorizers(register):
    """Register gray-to-RGB colorizers. ``factory(**options) -> torch.nn.Module`` mapping (N,1,H,W) to (N,3,H,W)."""


@hookspec
def register_datasets(register):
    """Register datasets. ``factory(root=None, **options) -> txkit.datasets.TxDataset``."""


@hookspec
def register_strategies(register):
    """Register transfer strategies. ``factory(**options) -> txkit.strategies.Strategy``."""


@hookspec
def register_visualizers(register):
    """Register visualizers. ``factory(**options) -> txkit.visualizers.Visualizer``."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``txkit`` command group."""
