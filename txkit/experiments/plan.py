"""The grid expanded into runs: every cell at every seed, plus the earlier stages the cells need.

A run is keyed by a hash of its resolved training config (an earlier stage it reads counts by that
stage's key, not by its path), so two cells that need the same stage share one run of it, and editing
the file only adds runs for what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from txkit.errors import TxkitError
from txkit.experiments.spec import RUN_REFERENCES, Experiment, StrategyEntry, stage_reference
from txkit.config import TrainConfig

PLAN_FILE = "plan.json"


class PlanError(TxkitError):
    """An experiment's plan.json that cannot be read."""

# Settings that change where and how fast a run trains, not what it learns.
NOT_IN_KEY = ("device", "num_workers", "image_cache", "cache_dir", "feature_cache", "channels_last", "compile")
# Fields added after experiment directories existed: left out of the key at their default, so those keep their ids.
KEYED_WHEN_SET = ("intensity", "sync_batchnorm", "folds", "fold", "fold_repeat", "fold_seed")


@dataclass
class PlannedRun:
    id: str
    kind: str  # "stage" or "cell"
    directory: str  # relative to the experiment directory
    config: dict  # TrainConfig fields; an earlier stage appears as the absolute path of its run directory
    needs: list[str] = field(default_factory=list)  # ids of the runs whose directories this one reads
    cell: dict | None = None  # for cells: strategy (the label), colorizer, backbone, fraction, fixed axes
    seed: int = 0


@dataclass
class Plan:
    experiment: str
    runs: list[PlannedRun]  # every run comes after the runs it needs
    overrides: dict[str, str] = field(default_factory=dict)  # `--set` options the runs were planned with

    def by_id(self) -> dict[str, PlannedRun]:
        return {run.id: run for run in self.runs}

    def cells(self) -> list[PlannedRun]:
        return [run for run in self.runs if run.kind == "cell"]

    def save(self, root: Path) -> None:
        from txkit.storage import write_json

        write_json(root / PLAN_FILE, {"experiment": self.experiment, "overrides": self.overrides,
                                      "runs": [asdict(r) for r in self.runs]})

    @classmethod
    def load(cls, root: Path) -> "Plan":
        """The saved plan; a damaged plan.json is one line (`txkit experiment run` writes it anew)."""
        path = Path(root) / PLAN_FILE
        try:
            data = json.loads(path.read_text())
            return cls(data["experiment"], [PlannedRun(**run) for run in data["runs"]], data.get("overrides", {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) else "not a plan txkit wrote"
            raise PlanError(f"{path}: unreadable ({problem}); run `txkit experiment run` on this experiment again "
                            f"(with --out {path.parent}): it writes the plan anew, and finished runs are not "
                            f"trained again") from None


def expand(experiment: Experiment, root: Path, overrides: dict[str, str] | None = None) -> Plan:
    planner = _Planner(experiment, Path(root).resolve())
    for seed in experiment.seeds:
        for entry in experiment.strategies:
            for colorizer in _axis(entry, "colorizer", experiment.colorizers):
                for backbone in _axis(entry, "backbone", experiment.backbones):
                    for fraction in experiment.fractions:
                        for fold in _folds(experiment):
                            planner.add_cell(entry, colorizer, backbone, fraction, seed, fold)
    return Plan(experiment.name, list(planner.runs.values()), dict(overrides or {}))


def _folds(experiment: Experiment) -> list[tuple[int, int] | None]:
    """(repeat, fold) of every run of a cell at one seed, or [None] without [grid] folds."""
    if experiment.folds is None:
        return [None]
    return [(repeat, fold) for repeat in range(experiment.repeats) for fold in range(experiment.folds)]


def _axis(entry: StrategyEntry, axis: str, values: list) -> list:
    if not entry.fixes(axis):
        return values
    value = entry.overrides[axis]
    return [None if value == "none" else value]


def digest(identity: dict) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")


class _Planner:
    def __init__(self, experiment: Experiment, root: Path):
        self.experiment, self.root = experiment, root
        self.runs: dict[str, PlannedRun] = {}  # insertion order is a valid training order

    def add_cell(self, entry: StrategyEntry, colorizer: str | None, backbone: str, fraction: float,
                 seed: int, fold: tuple[int, int] | None = None) -> None:
        exp = self.experiment
        settings = {**exp.defaults, **exp.target, **entry.overrides, "strategy": entry.strategy,
                    "colorizer": colorizer, "backbone": backbone, "fraction": fraction, "seed": seed}
        folded = []  # the run's name parts for its fold: fold I of K, and the repeat when there are several
        if fold is not None:
            repeat, index = fold
            settings.update(folds=exp.folds, fold=index, fold_repeat=repeat)
            folded = [f"fold{index}of{exp.folds}"] + ([f"rep{repeat}"] if exp.repeats > 1 else [])
        config, identity, needs = self._resolve(settings, backbone, seed)
        crossed = colorizer if colorizer and not entry.fixes("colorizer") else None
        name = slug("-".join(filter(None, [entry.label, crossed, backbone, f"r{fraction:g}", f"s{seed}", *folded])))
        run_id = f"{name}-{digest(identity)}"
        cell = {"strategy": entry.label, "colorizer": colorizer, "backbone": backbone, "fraction": fraction,
                "fixed": [axis for axis in ("colorizer", "backbone") if entry.fixes(axis)],
                "roc": exp.report.roc and fraction == max(exp.fractions)}  # the report plots its ROC curve
        if fold is not None:
            cell.update(folds=exp.folds, fold=fold[1], repeat=fold[0])
        self.runs.setdefault(run_id, PlannedRun(run_id, "cell", f"runs/{run_id}", config, needs, cell, seed))

    def _stage(self, name: str, backbone: str, seed: int) -> PlannedRun:
        stage = self.experiment.stages[name]
        settings = {**self.experiment.defaults, **stage.settings, "backbone": backbone}
        settings.pop("fold_seed", None)  # [defaults] fold_seed is for the folded cells; a stage is not folded
        if stage.per_seed:
            settings["seed"] = seed
        config, identity, needs = self._resolve(settings, backbone, seed)
        run_id = f"{slug(name)}-{digest(identity)}"
        if run_id not in self.runs:
            self.runs[run_id] = PlannedRun(run_id, "stage", f"stages/{run_id}", config, needs,
                                           seed=config["seed"])
        return self.runs[run_id]

    def _resolve(self, settings: dict, backbone: str, seed: int) -> tuple[dict, dict, list[str]]:
        """The full TrainConfig dict, the identity it is keyed by, and the stage runs it reads."""
        settings = dict(settings)
        if settings.get("colorizer") == "none":
            settings["colorizer"] = None
        if not _is_pretrained(settings.get("strategy", TrainConfig.model_fields["strategy"].default)):
            settings["weights"] = "none"  # a scratch run reads no stage, so it must not wait for one
        config = TrainConfig.from_dict(settings).to_dict()
        identity = {k: v for k, v in config.items() if k not in NOT_IN_KEY
                    and not (k in KEYED_WHEN_SET and v == TrainConfig.model_fields[k].default)}
        needs = []
        for key in RUN_REFERENCES:
            name = stage_reference(config[key])
            if name is not None:
                upstream = self._stage(name, backbone, seed)
                config[key] = str(self.root / upstream.directory)
                identity[key] = f"stage:{upstream.id}"
                needs.append(upstream.id)
        return config, identity, needs


def _is_pretrained(strategy: str) -> bool:
    from txkit.plugins import create

    return create("strategy", strategy).pretrained
