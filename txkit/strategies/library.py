"""The built-in strategies (factories registered in txkit.strategies.builtin)."""

from __future__ import annotations

from txkit.strategies.base import Phase, Strategy

# Piano 2020, Appendix B: SGD + one-cycle, max LR 2e-3 for mode 1 (12 epochs) and 2e-2 for mode 2 (6 epochs).
MODE1_LR, MODE2_LR, MODE3_LR = 2e-3, 2e-2, 1e-3
# Tajbakhsh et al. 2016, Table II: LR 1e-3, bias x2, new head x10 in shallow schemes, gamma 0.95 per epoch.
TAJBAKHSH_LR = 1e-3


def scratch(**_) -> Strategy:
    return Strategy("scratch", [Phase("train", "all", lr=0.01)], pretrained=False)


def last_layer(**_) -> Strategy:
    return Strategy("last-layer", [Phase("train", "head", lr=0.01)])


def full(**_) -> Strategy:
    return Strategy("full", [Phase("train", "all", lr=0.01)])


def finetune_from(variant: str, **_) -> Strategy:
    shallow = variant.startswith("fc") or variant in ("fc", "head", "classifier")
    return Strategy(f"finetune-from:{variant}",
                    [Phase("train", f"from:{variant}", lr=TAJBAKHSH_LR, schedule="exponential")],
                    bias_lr_mult=2.0, head_lr_mult=10.0 if shallow else 1.0)


def gradual_unfreeze(**_) -> Strategy:
    return Strategy("gradual-unfreeze", [Phase("train", "head", lr=0.01)], unfreeze_while_improving=True)


def colorizer(**_) -> Strategy:
    return Strategy("colorizer", [Phase("mode1", "colorizer+head", lr=MODE1_LR)], needs_colorizer=True)


def colorizer_then_full(**_) -> Strategy:
    return Strategy("colorizer-then-full",
                    [Phase("mode1", "colorizer+head", epochs_share=2 / 3, lr=MODE1_LR),
                     Phase("mode2", "all", epochs_share=1 / 3, reinit_head=True, lr=MODE2_LR)],
                    needs_colorizer=True)
