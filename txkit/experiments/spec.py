"""Experiment files: a TOML file read and checked into an ``Experiment``.

Every problem is reported as one line naming the file, the table and the field. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from txkit.config import TrainConfig, WeightsSource
from txkit.errors import TxkitError, for_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

STAGE_REF = "stage:"
TABLES = ("experiment", "defaults", "stages", "target", "grid", "report", "executor", "external")
AXES = {"strategy": "strategies", "colorizer": "colorizers", "backbone": "backbones", "seed": "seeds",
        "fraction": "fractions"}
GRID_KEYS = ("strategies", "colorizers", "backbones", "seeds", "fractions", "folds", "repeats")
# Set per run by [grid] folds / repeats; a table may set fold_seed (the same folds for every cell).
FOLD_FIELDS = ("folds", "fold", "fold_repeat")
REPORT_KEYS = ("compare", "plateau", "roc", "by", "data_options")
# [external.LABEL]: a dataset every cell is also scored on (external validation); written to EXTERNAL_FILE when the
# experiment runs, with its paths absolute, for the report.
EXTERNAL_KEYS = ("dataset", "data_root", "data_options", "class_map", "split")
EXTERNAL_FILE = "external.json"
# [executor]: where the grid's runs go with --executor slurm or submitit-local (the --slurm-* options).
EXECUTOR_KEYS = ("partition", "account", "gpus_per_task", "cpus_per_task", "time", "array_parallelism")
RUN_REFERENCES = ("weights", "colorizer_from")  # fields that may name an earlier stage
NO_COLORIZER = "none"


class ExperimentFileError(TxkitError):
    """A problem in an experiment file; the message names the file, the table and the field."""


@dataclass
class StrategyEntry:
    """One value of the strategies axis: a label, a registered strategy and fields that only it changes.

    A ``colorizer`` or ``backbone`` among the overrides fixes that axis for this entry (it is not crossed).
    """

    label: str
    strategy: str
    overrides: dict = field(default_factory=dict)

    def fixes(self, axis: str) -> bool:
        return axis in self.overrides


@dataclass
class Stage:
    """An earlier stage (e.g. textures); trained once per backbone, or once per seed with ``per_seed``."""

    name: str
    settings: dict
    per_seed: bool = False


@dataclass
class ReportOptions:
    compare: list[tuple[str, str]] | None = None  # None: the default pairs (see report.default_pairs)
    plateau: float = 0.5  # share of the last phase's epochs taken as the validation plateau
    roc: bool = True
    by: list[str] = field(default_factory=list)  # metadata columns of the subgroup tables (sex, age, view)
    data_options: dict = field(default_factory=dict)  # added to the runs' dataset options to read metadata


@dataclass
class ExternalDataset:
    """One [external.LABEL] table: a dataset every cell's run is scored on, in the run's classes."""

    label: str
    dataset: str
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)
    class_map: dict = field(default_factory=dict)  # external class -> run class
    split: str | None = None  # None: its test split, else all of its images

    @property
    def key(self) -> str:
        """A short digest of the whole entry: stored predictions are kept per entry and redone when it changes."""
        import hashlib
        import json
        from dataclasses import asdict

        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class Experiment:
    path: Path
    name: str
    description: str
    defaults: dict
    stages: dict[str, Stage]
    target: dict
    strategies: list[StrategyEntry]
    colorizers: list[str | None]
    backbones: list[str]
    seeds: list[int]
    fractions: list[float]
    report: ReportOptions
    folds: int | None = None  # [grid] folds: every cell runs once per fold (x repeat x seed)
    repeats: int = 1  # [grid] repeats: repetitions of the K-fold split, each with its own assignment
    executor: dict = field(default_factory=dict)  # [executor], checked: see parse_executor_options
    external: list[ExternalDataset] = field(default_factory=list)  # [external.LABEL] tables

    def strategy(self, label: str) -> StrategyEntry:
        return next(s for s in self.strategies if s.label == label)


# ------------------------------------------------------------------------------------------------ loading

def load_experiment(path: str | Path, overrides: dict[str, str] | None = None) -> Experiment:
    path = Path(path)
    data = apply_overrides(read_toml(path), overrides or {})
    check = Checker(path)
    unknown = [k for k in data if k not in TABLES]
    if unknown:
        check.fail("top level", f"unknown table {unknown[0]!r}{_close(unknown[0], TABLES)}; tables: "
                                f"{', '.join(TABLES)}")
    for name in TABLES:
        if name in data and not isinstance(data[name], dict):
            check.fail(f"[{name}]", "must be a table")
    experiment = _build(check, data)
    _check_fold_seed(check, experiment)
    _check_references(check, experiment)
    _check_names(check, experiment)
    return experiment


def read_toml(path: Path) -> dict:
    if tomllib is None:
        raise ExperimentFileError("reading experiment files on Python 3.10 needs the package tomli: pip install tomli")
    if not path.is_file():
        raise ExperimentFileError(f"{path}: no such experiment file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentFileError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:  # tomllib decodes the bytes first
        raise ExperimentFileError(f"{path}: not valid TOML: not UTF-8 text") from None
    except OSError as exc:
        raise ExperimentFileError(f"{path}: cannot read the experiment file ({exc.strerror or exc})") from None


def apply_overrides(data: dict, overrides: dict[str, str]) -> dict:
    """`--set TABLE.FIELD=VALUE` on top of the file. VALUE is read as a TOML value (2, 0.5, true, [0, 1],
    {seed = 3}) or else taken as a string; a relative path is relative to the current directory."""
    for dotted, raw in overrides.items():
        *tables, key = dotted.split(".")
        if not tables or not all(tables) or not key:
            raise ExperimentFileError(f"--set {dotted}={raw}: name a table and a field, e.g. target.data_root=PATH")
        node = data
        for name in tables:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ExperimentFileError(f"--set {dotted}={raw}: {name} is not a table")
        node[key] = _override_value(key, raw)
    return data


def _override_value(key: str, raw: str):
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    if key in PATH_FIELDS and isinstance(value, str) and _is_path(value):
        value = str(Path(value).expanduser().resolve())
    return value


def _build(check: Checker, data: dict) -> Experiment:
    meta = check.keys("[experiment]", data.get("experiment", {}), ("name", "description"))
    defaults = check.config("[defaults]", data.get("defaults", {}), forbidden=FOLD_FIELDS)
    target = check.config("[target]", data.get("target", {}), forbidden=tuple(AXES) + FOLD_FIELDS)
    grid = check.keys("[grid]", data.get("grid", {}), GRID_KEYS)
    if "strategies" not in grid:
        check.fail("[grid]", "strategies is required, e.g. strategies = [\"full\", \"scratch\"]")
    folds, repeats = _folds(check, grid)
    default_colorizer = defaults.get("colorizer", NO_COLORIZER)
    default_backbone = defaults.get("backbone", TrainConfig.model_fields["backbone"].default)
    return Experiment(
        path=check.path, name=check.text("[experiment] name", meta.get("name", check.path.stem)),
        description=check.text("[experiment] description", meta.get("description", "")),
        defaults=defaults, stages=_stages(check, data.get("stages", {})), target=target,
        strategies=_strategies(check, grid["strategies"]),
        colorizers=_colorizers(check, grid.get("colorizers", [default_colorizer])),
        backbones=check.names("[grid] backbones", grid.get("backbones", [default_backbone])),
        seeds=_seeds(check, grid.get("seeds", [0])), fractions=_fractions(check, grid.get("fractions", [1.0])),
        report=parse_report_options(check, data.get("report", {})),
        executor=parse_executor_options(check, data.get("executor", {})),
        external=parse_external(check, data.get("external", {})), folds=folds, repeats=repeats)


def _folds(check: Checker, grid: dict) -> tuple[int | None, int]:
    """[grid] folds = K (2 or more) and repeats = R (1 or more, with folds)."""
    folds, repeats = grid.get("folds"), grid.get("repeats", 1)
    if folds is not None and (not _is(folds, int) or folds < 2):
        check.fail("[grid] folds", f"must be a whole number of folds, 2 or more, e.g. folds = 5; got {folds!r}")
    if not _is(repeats, int) or repeats < 1:
        check.fail("[grid] repeats", f"must be a whole number, 1 or more, e.g. repeats = 2; got {repeats!r}")
    if folds is None and "repeats" in grid:
        check.fail("[grid] repeats", "repeats the K-fold split: set [grid] folds = K too, e.g. folds = 5")
    return folds, repeats


def _stages(check: Checker, table: dict) -> dict[str, Stage]:
    stages = {}
    for name, settings in table.items():
        where = f"[stages.{name}]"
        if not isinstance(settings, dict):
            check.fail(where, "must be a table of training fields")
        settings = dict(settings)
        per_seed = settings.pop("per_seed", False)
        if not isinstance(per_seed, bool):
            check.fail(where, f"per_seed must be true or false, got {per_seed!r}")
        config = check.config(where, settings, forbidden=("backbone", "fold_seed") + FOLD_FIELDS)
        stages[name] = Stage(name, config, per_seed)
    return stages


def _strategies(check: Checker, values) -> list[StrategyEntry]:
    where = "[grid] strategies"
    entries = []
    for item in check.list_of(where, values, (str, dict)):
        if isinstance(item, str):
            entries.append(StrategyEntry(item, item))
            continue
        item = dict(item)
        if not isinstance(item.get("strategy"), str):
            check.fail(where, f"entry {item!r} needs strategy = \"NAME\"")
        strategy = item.pop("strategy")
        label = check.text(where + " name", item.pop("name", strategy))
        overrides = check.config(f"{where} entry {label!r}", item, forbidden=("seed", "fraction") + FOLD_FIELDS)
        entries.append(StrategyEntry(label, strategy, overrides))
    labels = [e.label for e in entries]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        check.fail(where, f"label {twice[0]!r} is used twice; give one entry name = \"...\"")
    return entries


def _colorizers(check: Checker, values) -> list[str | None]:
    names = check.names("[grid] colorizers", values if isinstance(values, list) else [values])
    return [None if n == NO_COLORIZER else n for n in names]


def _seeds(check: Checker, values) -> list[int]:
    seeds = check.list_of("[grid] seeds", values, (int,))
    if len(set(seeds)) < len(seeds):
        check.fail("[grid] seeds", "a seed appears twice")
    return seeds


def _fractions(check: Checker, values) -> list[float]:
    fractions = [float(v) for v in check.list_of("[grid] fractions", values, (int, float))]
    for value in fractions:
        if not 0 < value <= 1:
            check.fail("[grid] fractions", f"{value} is outside (0, 1]")
    if len(set(fractions)) < len(fractions):
        check.fail("[grid] fractions", "a fraction appears twice")
    return fractions


def parse_report_options(check: Checker, table: dict) -> ReportOptions:
    table = check.keys("[report]", table, REPORT_KEYS)
    options = ReportOptions()
    if "compare" in table:
        pairs = check.list_of("[report] compare", table["compare"], (list,))
        for pair in pairs:
            if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                check.fail("[report] compare", f"each pair is two names, e.g. [\"full\", \"scratch\"]; got {pair!r}")
        options.compare = [tuple(p) for p in pairs]
    if "plateau" in table:
        value = table["plateau"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            check.fail("[report] plateau", f"must be a share of the epochs in (0, 1], got {value!r}")
        options.plateau = float(value)
    if "roc" in table:
        if not isinstance(table["roc"], bool):
            check.fail("[report] roc", f"must be true or false, got {table['roc']!r}")
        options.roc = table["roc"]
    if "by" in table:
        value = table["by"]
        options.by = check.names("[report] by", [value] if isinstance(value, str) else value)
    if "data_options" in table:
        options.data_options = _options_table(check, "[report] data_options", table["data_options"])
    return options


def _options_table(check: Checker, where: str, value) -> dict:
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        check.fail(where, f"must be a table of option = value, e.g. {{ subgroups = \"sex,age\" }}, got {value!r}")
    return dict(value)


def parse_external(check: Checker, table: dict) -> list[ExternalDataset]:
    """[external.LABEL] tables: dataset (required), data_root, data_options, class_map, split."""
    from txkit.run.external import parse_class_map

    out = []
    for label, entry in table.items():
        where = f"[external.{label}]"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
            check.fail(where, "the label may hold letters, digits, '_', '.' and '-' only (it names files)")
        if not isinstance(entry, dict):
            check.fail(where, "must be a table, e.g. [external.nih] with dataset = \"csv\" and data_root = \"PATH\"")
        entry = check.keys(where, entry, EXTERNAL_KEYS)
        if not isinstance(entry.get("dataset"), str) or not entry["dataset"].strip():
            check.fail(where, "dataset = \"NAME\" is required: the registered dataset to score the runs on")
        check.registered(where, {"dataset": entry["dataset"]})
        root = entry.get("data_root")
        if root is not None and (not isinstance(root, str) or not root.strip()):
            check.fail(where, f"data_root must be a path, got {root!r}")
        split = entry.get("split")
        if split is not None and (not isinstance(split, str) or not split.strip()):
            check.fail(where, f"split must be a split name (train, val, test) or all, got {split!r}")
        try:
            class_map = parse_class_map(entry.get("class_map"))
        except TxkitError as exc:
            check.fail(where, for_config(str(exc)))
        options = _options_table(check, f"{where} data_options", entry.get("data_options", {}))
        out.append(ExternalDataset(label, entry["dataset"].strip(), check._absolute("data_root", root), options,
                                   class_map, split))
    return out


def check_external(experiment: Experiment) -> None:
    """Before anything trains: each [external] dataset builds, its class_map names its classes and its images
    are there (the class_map's run classes are checked when the report scores the runs)."""
    from txkit.run.external import probe_external

    check = Checker(experiment.path)
    for entry in experiment.external:
        try:
            probe_external(entry.dataset, entry.data_root, entry.data_options, entry.class_map, entry.split)
        except TxkitError as exc:
            check.fail(f"[external.{entry.label}]", for_config(str(exc)))


def save_external(root: Path, experiment: Experiment) -> None:
    """EXTERNAL_FILE in the experiment directory: the [external] tables as the report reads them."""
    from dataclasses import asdict

    from txkit.storage import write_json

    write_json(Path(root) / EXTERNAL_FILE, [asdict(e) for e in experiment.external])


def load_external(root: Path) -> list[ExternalDataset]:
    """The [external] tables the experiment last ran with (none for directories from before them)."""
    from txkit.storage import read_json

    path = Path(root) / EXTERNAL_FILE
    if not path.exists():
        return []
    data = read_json(path, "delete it and run `txkit experiment run` again to write it")
    return [ExternalDataset(**entry) for entry in data]


def parse_executor_options(check: Checker, table: dict) -> dict:
    """[executor]: the same settings as the --slurm-* options (time in minutes, or HH:MM:SS as a string)."""
    table = check.keys("[executor]", table, EXECUTOR_KEYS)
    out = {}
    for key, value in table.items():
        where = f"[executor] {key}"
        if key in ("partition", "account"):
            if not isinstance(value, str) or not value.strip():
                check.fail(where, f"must be a non-empty string, got {value!r}")
            out[key] = value.strip()
        elif key == "time":
            try:
                out[key] = parse_minutes(value)
            except ValueError as exc:
                check.fail(where, str(exc))
        else:
            least = 0 if key == "gpus_per_task" else 1
            if not _is(value, int) or value < least:
                check.fail(where, f"must be an integer of at least {least}, got {value!r}")
            out[key] = value
    return out


def parse_minutes(value) -> int:
    """A time limit in whole minutes, from minutes or Slurm's forms ("MM", "MM:SS", "HH:MM:SS", "D-HH",
    "D-HH:MM", "D-HH:MM:SS"); seconds round up."""
    if _is(value, int) and value > 0:
        return value
    text = value.strip() if isinstance(value, str) else ""
    days, dash, clock = text.partition("-")
    if not dash:
        days, clock = "0", text
    parts = clock.split(":")
    if not (days.isdigit() and 1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise ValueError(f"must be minutes or HH:MM:SS (Slurm's forms, e.g. 90, \"1:30:00\", \"2-00:00:00\"), "
                         f"got {value!r}")
    numbers = [int(p) for p in parts]
    if dash:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = numbers + [0] * (3 - len(numbers))
    else:  # minutes[:seconds] or hours:minutes:seconds
        numbers = numbers + [0] if len(numbers) == 1 else numbers
        hours, minutes, seconds = [0] * (3 - len(numbers)) + numbers
    total = int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total < 1:
        raise ValueError(f"must be at least one minute, got {value!r}")
    return total


# ------------------------------------------------------------------------------------ cross-table checks

def _check_references(check: Checker, experiment: Experiment) -> None:
    """Every stage:NAME names a stage, and stages do not feed each other in a circle."""
    for where, settings in _setting_tables(experiment):
        for key in RUN_REFERENCES:
            name = stage_reference(settings.get(key))
            if name is not None and name not in experiment.stages:
                check.fail(where, f"{key} = \"stage:{name}\" names no stage; stages: "
                                  f"{', '.join(experiment.stages) or 'none defined'}")
    for name in experiment.stages:
        _check_no_cycle(check, experiment, name, [])


def _check_fold_seed(check: Checker, experiment: Experiment) -> None:
    if experiment.folds is not None:
        return
    for where, settings in _setting_tables(experiment):
        if "fold_seed" in settings:
            check.fail(where, "fold_seed seeds the folds of [grid] folds = K: set that too, or remove fold_seed")


def _setting_tables(experiment: Experiment) -> list[tuple[str, dict]]:
    """Every table of training fields, as (where, fields)."""
    tables = [(f"[stages.{s.name}]", s.settings) for s in experiment.stages.values()]
    tables += [("[defaults]", experiment.defaults), ("[target]", experiment.target)]
    return tables + [(f"[grid] strategies entry {e.label!r}", e.overrides) for e in experiment.strategies]


def check_data_roots(experiment: Experiment) -> None:
    """Before anything trains: a missing data root would fail every run that reads it."""
    check = Checker(experiment.path)
    tables = _setting_tables(experiment) + [(f"[external.{e.label}]", {"data_root": e.data_root})
                                            for e in experiment.external]
    for where, settings in tables:
        root = settings.get("data_root")
        if isinstance(root, str) and not Path(root).exists():
            table = where[1:-1] if where.endswith("]") else None  # a strategies entry cannot be --set
            override = f" or pass --set {table}.data_root=PATH" if table else ""
            check.fail(where, f"data_root {root} does not exist; fix the path (relative paths in the file are "
                              f"relative to the file){override}")


def _check_no_cycle(check: Checker, experiment: Experiment, name: str, seen: list[str]) -> None:
    if name in seen:
        check.fail(f"[stages.{name}]", f"stages feed each other in a circle: {' -> '.join(seen + [name])}")
    settings = {**experiment.defaults, **experiment.stages[name].settings}
    for key in RUN_REFERENCES:
        upstream = stage_reference(settings.get(key))
        if upstream is not None:
            _check_no_cycle(check, experiment, upstream, seen + [name])


def _check_names(check: Checker, experiment: Experiment) -> None:
    """Registered names, and colorizer strategies that would run without a colorizer."""
    from txkit.plugins import create

    tables = [("[defaults]", experiment.defaults), ("[target]", experiment.target)]
    tables += [(f"[stages.{s.name}]", s.settings) for s in experiment.stages.values()]
    for where, settings in tables:
        check.registered(where, settings)
    for backbone in experiment.backbones:
        check.registered("[grid] backbones", {"backbone": backbone})
    for colorizer in filter(None, experiment.colorizers):
        check.registered("[grid] colorizers", {"colorizer": colorizer})
    for entry in experiment.strategies:
        where = f"[grid] strategies entry {entry.label!r}"
        check.registered(where, {"strategy": entry.strategy, **entry.overrides})
        colorizers = [entry.overrides.get("colorizer")] if entry.fixes("colorizer") else experiment.colorizers
        if create("strategy", entry.strategy).needs_colorizer and None in colorizers:
            check.fail(where, f"strategy {entry.strategy!r} needs a colorizer: add colorizer = \"NAME\" to the "
                              f"entry or remove \"none\" from [grid] colorizers")


def _is_path(value: str) -> bool:
    """A path, not imagenet, none or stage:NAME (the same parse as training's, WeightsSource)."""
    try:
        return WeightsSource.parse(value).kind in ("file", "run")
    except ValueError:
        return False


def stage_reference(value) -> str | None:
    """The stage named by ``stage:NAME``, else None."""
    if isinstance(value, str) and value.startswith(STAGE_REF):
        return value[len(STAGE_REF):]
    return None


# -------------------------------------------------------------------------------------------- the checker

CONFIG_FIELDS = tuple(TrainConfig.model_fields)
PATH_FIELDS = tuple(name for name, info in TrainConfig.model_fields.items()
                    if (info.json_schema_extra or {}).get("path"))
TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}


def _close(name: str, choices) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _is(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


@dataclass
class Checker:
    path: Path

    def fail(self, where: str, message: str):
        raise ExperimentFileError(f"{self.path}: {where}: {message}")

    def keys(self, where: str, table: dict, allowed: tuple[str, ...]) -> dict:
        for key in table:
            if key not in allowed:
                self.fail(where, f"unknown field {key!r}{_close(key, allowed)}; fields: {', '.join(allowed)}")
        return table

    def text(self, where: str, value) -> str:
        if not isinstance(value, str):
            self.fail(where, f"must be a string, got {value!r}")
        return value

    def list_of(self, where: str, values, kinds: tuple[type, ...]) -> list:
        if not isinstance(values, list) or not values:
            self.fail(where, f"must be a non-empty list, got {values!r}")
        for value in values:
            if not any(_is(value, kind) for kind in kinds):
                words = " or ".join(TYPE_WORDS.get(k, "a list") for k in kinds)
                self.fail(where, f"each value must be {words}, got {value!r}")
        return list(values)

    def names(self, where: str, values) -> list[str]:
        names = self.list_of(where, values, (str,))
        if len(set(names)) < len(names):
            self.fail(where, "a name appears twice")
        return names

    def config(self, where: str, table: dict, forbidden: tuple[str, ...] = ()) -> dict:
        """Training fields (TrainConfig's), with their types checked and relative paths made absolute."""
        out = {}
        for key, value in table.items():
            if key in forbidden:
                self.fail(where, _forbidden_message(key))
            if key not in CONFIG_FIELDS:
                self.fail(where, f"unknown field {key!r}{_close(key, CONFIG_FIELDS)}; fields are those of "
                                 f"`txkit train` (dataset, data_root, backbone, weights, strategy, epochs, ...)")
            out[key] = self._absolute(key, self._checked(where, key, value))
        return out

    def _checked(self, where: str, key: str, value):
        """The field's own validation (TrainConfig's); ``stage:NAME`` references pass through."""
        if key in RUN_REFERENCES and stage_reference(value) is not None:
            return value
        try:
            TrainConfig.check_field(key, value, strict=True)
        except TxkitError as exc:
            self.fail(where, for_config(str(exc)))
        return value

    def registered(self, where: str, settings: dict) -> None:
        from txkit.plugins import registry

        for kind in ("dataset", "backbone", "strategy", "colorizer"):
            name = settings.get(kind)
            if name is not None and name != NO_COLORIZER:
                try:
                    registry(kind).get(name)
                except TxkitError as exc:
                    self.fail(where, f"{kind}: {exc}")

    def _absolute(self, key: str, value):
        """Paths in the file are relative to the file, so an experiment runs from any directory."""
        if key not in PATH_FIELDS or not isinstance(value, str) or not _is_path(value):
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (self.path.parent / path).resolve())


def _forbidden_message(key: str) -> str:
    if key == "backbone":
        return "backbone cannot be set here: a stage takes the backbone of the cell that uses it"
    if key == "fold_seed":
        return "fold_seed cannot be set here: an earlier stage is not folded (set it in [defaults] or [target])"
    if key in FOLD_FIELDS:
        return (f"{key} is set per run by the grid: set [grid] folds = K (and repeats = R) instead; every cell then "
                f"runs once per fold")
    return f"{key} is a grid axis: set [grid] {AXES[key]} instead"
