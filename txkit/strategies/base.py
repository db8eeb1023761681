"""The strategy contract.

A strategy is one or more phases. Each phase names the stages that train (a rule resolved against the
network's stage list), whether the head is re-initialised first, its share of the epochs, and default
optimiser settings (overridden by the user's `lr`/`optimizer`/`schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from txkit.errors import TxkitError

LEARNED_COLORIZERS = ("deconv", "resizeconv", "pixelshuffle", "coloru", "conv1x1")  # the built-in ones


@dataclass
class Phase:
    name: str
    trains: str  # "all" | "head" | "colorizer+head" | "from:<stage>"
    epochs_share: float = 1.0
    reinit_head: bool = False
    lr: float = 0.01
    optimizer: str = "sgd"
    schedule: str = "onecycle"


@dataclass
class Strategy:
    name: str
    phases: list[Phase]
    pretrained: bool = True
    bias_lr_mult: float = 1.0
    head_lr_mult: float = 1.0
    unfreeze_while_improving: bool = False
    needs_colorizer: bool = False
    info: dict = field(default_factory=dict)

    def trainable(self, phase: Phase, stages: list[str], train_colorizer: bool = True) -> set[str]:
        """The stages that train in ``phase``, given the network's ordered stage names."""
        head = stages[-1]
        has_colorizer = stages[0] == "colorizer"
        if phase.trains == "all":
            chosen = set(stages)
        elif phase.trains == "head":
            chosen = {head}
        elif phase.trains == "colorizer+head":
            if not has_colorizer:
                raise TxkitError(f"strategy {self.name!r} trains a colorizer, but this network has no colorizer "
                                 f"with trainable parameters; pass `colorizer` with a learned colorizer "
                                 f"({', '.join(LEARNED_COLORIZERS)}) or use strategy full")
            chosen = {"colorizer", head}
        elif phase.trains.startswith("from:"):
            start = phase.trains[5:]
            if start not in stages or start == "colorizer":
                backbone_stages = [s for s in stages if s != "colorizer"]
                raise TxkitError(f"no stage {start!r} in this backbone; finetune-from takes one of: "
                                 f"{', '.join(backbone_stages)}")
            chosen = set(stages[stages.index(start):]) | ({"colorizer"} if has_colorizer else set())
        else:
            raise TxkitError(f"strategy {self.name!r} has an unknown phase rule {phase.trains!r}")
        if not train_colorizer:
            chosen.discard("colorizer")
        return chosen

    def check_colorizer(self, colorizer: str | None, has_parameters: bool) -> None:
        """Fail up front (before a run directory exists) when a colorizer strategy would have nothing to train."""
        if not self.needs_colorizer:
            return
        learned = ", ".join(LEARNED_COLORIZERS)
        if colorizer is None:
            raise TxkitError(f"strategy {self.name!r} trains a colorizer: pass `colorizer` NAME, a learned "
                             f"one ({learned}; `txkit list colorizers`), or use strategy full")
        if not has_parameters:
            raise TxkitError(f"colorizer {colorizer!r} has no trainable parameters, so strategy {self.name!r} has "
                             f"nothing to train; use a learned colorizer ({learned}) or strategy full")

    def next_unfrozen(self, trainable: set[str], stages: list[str]) -> set[str]:
        """For gradual unfreezing: add the deepest still-frozen backbone stage."""
        frozen = [s for s in stages if s not in trainable and s != "colorizer"]
        return trainable | {frozen[-1]} if frozen else trainable
