"""A finished run loaded for use: its network with the best weights, placed by a runtime, and the input contract
it recorded at training time (image size, intensity rule, classes, task). Every command that uses a run
(evaluate, calibrate, predict, colorize, visualize, export, reports) loads it here, so all of them feed the
network what it trained on, whatever the training folder holds today."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from txkit import rundir
from txkit.datasets.intensity import IntensityRule, run_rule
from txkit.errors import TxkitError
from txkit.network import TxNet
from txkit.rundir import RunDir
from txkit.training import checkpoint as ckpt
from txkit.training.build import build_network, build_strategy


@dataclass
class LoadedRun:
    """``net`` (eval mode, on the CPU until a runtime places it), ``meta`` (config.json), ``cfg`` (its
    TrainConfig), ``rule`` (the intensity rule as fitted and recorded at training time)."""

    path: Path
    net: TxNet
    meta: dict
    cfg: object
    rule: IntensityRule

    @property
    def image_size(self) -> int:
        return int(self.meta["resolved"]["image_size"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["resolved"]["classes"])

    @property
    def task(self) -> str:
        return self.meta["resolved"]["task"]


def open_run(run_dir: str | Path) -> LoadedRun:
    """The run at ``run_dir`` with its best weights; one line when it is not a run or has no finished epoch."""
    run = Path(run_dir)
    cfg, meta = rundir.load_run_config(run)
    weights = run / RunDir.WEIGHTS
    if not weights.exists():
        raise TxkitError(f"{weights}: not found; the run has no finished epoch yet (resume it with "
                         f"txkit train --resume {run})")
    net = build_network(cfg, meta["resolved"]["num_classes"], build_strategy(cfg), load_weights=False)
    net.load_state_dict(ckpt.load_tensors(weights))
    return LoadedRun(run, net.eval(), meta, cfg, run_rule(meta))


def load_run(run_dir: str | Path) -> tuple[TxNet, dict]:
    """The run's network with its best weights, and its config.json."""
    loaded = open_run(run_dir)
    return loaded.net, loaded.meta


def recorded_rule(loaded: LoadedRun, dataset) -> IntensityRule:
    """The rule the run trained with. Runs written before intensity rules were recorded have none fitted:
    for them (only) the rule is fitted again on the dataset's training split, as they were."""
    rule = loaded.rule
    unfitted = rule.kinds is None or (rule.name == "percentile" and rule.bounds is None)
    if not unfitted:
        return rule
    from txkit.data.loader import input_rule

    return input_rule(loaded.cfg, dataset)
