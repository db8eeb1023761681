"""The hook specifications a txkit plugin implements.

These signatures are txkit's stable plugin API. Every hook receives a ``register`` callable::

    register(name, factory, description="", *, options=None)

``factory`` is a callable, or an ``"package.module:function"`` string that is imported only when the entry
is used, so listing plugins never imports torch. A name ending in ``*`` registers a family: ``timm/*``
answers ``timm/convnext_tiny`` and its factory receives the part matched by ``*`` as ``variant=``.

``options`` declares the entry's user options: a :class:`txkit.Options` subclass (one pydantic field
per option, with default and help), or a ``"package.module:Class"`` string imported only when the entry is
shown (``txkit list KIND NAME``) or used. txkit then validates what the user gives (``--data-option``,
``--colorizer-option``, experiment files) before calling the factory, which receives every option, defaults
filled in; an unknown option gets a did-you-mean. Without ``options`` the factory receives the options as given
and must check them itself. Backbones take no user options (txkit passes ``num_classes`` and ``pretrained``).
"""

import pluggy

hookspec = pluggy.HookspecMarker("txkit")
hookimpl = pluggy.HookimplMarker("txkit")


@hookspec
def register_backbones(register):
    """Register backbones. ``factory(num_classes, pretrained=False, **options) -> txkit.Backbone``."""


@hookspec
def register_colorizers(register):
    """Register gray-to-RGB colorizers. ``factory(**options) -> torch.nn.Module`` (optionally a
    ``txkit.Colorizer``) mapping (N,1,H,W) to (N,3,H,W)."""


@hookspec
def register_datasets(register):
    """Register datasets. ``factory(root=None, **options) -> txkit.TxDataset``; ``root`` is
    ``--data-root``, passed by txkit beside the declared options (declare it in no Options class)."""


@hookspec
def register_strategies(register):
    """Register transfer strategies. ``factory(**options) -> txkit.Strategy``."""


@hookspec
def register_visualizers(register):
    """Register visualizers. ``factory(**options) -> txkit.Visualizer``; declare options with
    ``register(..., options=...)`` as for every other kind."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``txkit`` command group."""
