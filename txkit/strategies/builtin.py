"""txkit's own transfer strategies, registered through the plugin hook."""

from txkit.hookspecs import hookimpl

_S = "txkit.strategies.library"
_NONE = "txkit.options:NoOptions"  # strategies take no options (finetune-from:* gets its stage as variant)


@hookimpl
def register_strategies(register):
    register("scratch", f"{_S}:scratch", "random initialisation, every layer trained (no transfer)", options=_NONE)
    register("last-layer", f"{_S}:last_layer",
             "new head only, backbone frozen (thesis mode 3; Suzuki's fine-tuning; FT:only fc8)", options=_NONE)
    register("finetune-from:*", f"{_S}:finetune_from",
             "train from the named stage to the head, freeze below (Tajbakhsh FT:convK-fc8, Table II LRs)",
             options=_NONE)
    register("full", f"{_S}:full", "new head, every layer trained from pretrained weights (Suzuki's feature transfer)",
             options=_NONE)
    register("gradual-unfreeze", f"{_S}:gradual_unfreeze",
             "start with the head, unfreeze one more stage each epoch while validation improves", options=_NONE)
    register("colorizer", f"{_S}:colorizer", "colorizer + new head trained, backbone frozen (thesis mode 1)",
             options=_NONE)
    register("colorizer-then-full", f"{_S}:colorizer_then_full",
             "mode 1, then re-initialise the head and train everything (thesis mode 1 -> mode 2)", options=_NONE)
