"""`txkit experiment report DIR`: the results table, representative values, Wilcoxon tests, robustness slopes
and plots of an experiment directory, written to DIR/report/.

A *cell* is one point of the grid without the seed (strategy × colorizer × backbone × fraction); its runs
are that cell at each seed, and statistics over seeds are taken per cell.

Representative value (Suzuki et al., IPSJ TOM 2018, "the 75th percentile of a plateau"): the *plateau* of
a run is the last ``plateau`` share (default one half, rounded up, at least one epoch) of the epochs of its
last phase in metrics.jsonl; its representative value of a validation metric is the 75th percentile of that
metric over the plateau (numpy.percentile, linear interpolation). For the loss the 75th percentile is the
pessimistic side, as in the paper, which used it for every metric.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from txkit.errors import TxkitError
from txkit.experiments.plan import PLAN_FILE, Plan, PlannedRun
from txkit.experiments.predictions import probabilities_of_test_split
from txkit.experiments.spec import Checker, ReportOptions, apply_overrides, parse_report_options, read_toml
from txkit.experiments.state import DONE, ExperimentState

METRICS = ("accuracy", "precision", "recall", "f1", "auc")
PLATEAU_METRICS = METRICS + ("loss",)
SLOPE_METRICS = (("test", "accuracy"), ("test", "f1"), ("test", "auc"), ("plateau", "accuracy"),
                 ("plateau", "loss"))
AXES = ("strategy", "colorizer", "backbone")
REPORT_DIR = "report"


@dataclass
class RunRecord:
    id: str
    seed: int
    cell: tuple  # (strategy label, colorizer or None, backbone, fraction)
    fixed: list[str]  # axes the strategy entry fixes rather than crosses
    status: str
    error: str | None
    directory: Path
    test: dict = field(default_factory=dict)  # metric -> value on the test split
    plateau: dict = field(default_factory=dict)  # metric -> 75th percentile over the validation plateau
    curve: list[dict] = field(default_factory=list)  # metrics.jsonl

    @property
    def done(self) -> bool:
        return self.status == DONE


def build_report(root: str | Path) -> dict:
    """Write DIR/report/{results.md, results.csv, runs.csv, wilcoxon.csv, slopes.csv, report.json, *.png}."""
    from txkit.experiments import plots

    root = Path(root).resolve()
    plan, state, options = load_experiment_dir(root)
    records = [run_record(root, run, state, options.plateau) for run in plan.cells()]
    cells = group_cells(records)
    rows = [cell_row(key, runs) for key, runs in cells.items()]
    comparisons = compare_cells(cells, options.compare or default_pairs(records), root)
    slopes = robustness_slopes(cells)
    out = root / REPORT_DIR
    out.mkdir(exist_ok=True)
    figures = plots.make_plots(out, records, rows, slopes, options.roc, probabilities)
    report = {"experiment": plan.experiment, "directory": str(root), "plateau": options.plateau,
              "runs": run_counts(records, plan), "cells": rows, "wilcoxon": comparisons, "slopes": slopes,
              "plots": [p.name for p in figures], "failed": failures(records, plan, state)}
    write_outputs(out, report, records)
    return report


# ------------------------------------------------------------------------------------------------ loading

def load_experiment_dir(root: Path) -> tuple[Plan, ExperimentState, ReportOptions]:
    if not (root / PLAN_FILE).exists():
        raise TxkitError(f"{root}: no {PLAN_FILE}; not an experiment directory (made by `txkit experiment run`)")
    plan = Plan.load(root)
    return plan, ExperimentState.load(root), report_options(root, plan.overrides)


def report_options(root: Path, overrides: dict[str, str]) -> ReportOptions:
    """The [report] table of the copy of the experiment file (so it can be edited and the report redone),
    with the run's `--set report.*` overrides."""
    copy = root / "experiment.toml"
    if not copy.exists():
        return ReportOptions()
    data = apply_overrides(read_toml(copy), {k: v for k, v in overrides.items() if k.startswith("report.")})
    return parse_report_options(Checker(copy), data.get("report", {}))


def run_record(root: Path, run: PlannedRun, state: ExperimentState, plateau: float) -> RunRecord:
    cell = (run.cell["strategy"], run.cell["colorizer"], run.cell["backbone"], run.cell["fraction"])
    record = RunRecord(run.id, run.seed, cell, run.cell["fixed"], state.status(run.id) or "pending",
                       state.error(run.id), root / run.directory)
    summary_path = record.directory / "summary.json"
    if record.done and summary_path.exists():
        from txkit.training.checkpoint import read_json, restore_floats

        test = restore_floats(read_json(summary_path)).get("test") or {}
        record.test = {m: _number(test.get(m)) for m in METRICS}
        record.curve = read_curve(record.directory / "metrics.jsonl")
        record.plateau = plateau_values(record.curve, plateau)
    elif record.done:
        record.status = "missing"  # recorded as done, but its run directory is gone
    return record


def read_curve(path: Path) -> list[dict]:
    from txkit.training.checkpoint import restore_floats

    lines = path.read_text().splitlines() if path.exists() else []
    return [restore_floats(json.loads(line)) for line in lines if line.strip()]


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


# ------------------------------------------------------------------------------------------- statistics

def plateau_epochs(curve: list[dict], share: float) -> list[dict]:
    """The last ``share`` of the epochs of the last phase (rounded up, at least one)."""
    if not curve:
        return []
    last_phase = [line for line in curve if line["phase"] == curve[-1]["phase"]]
    return last_phase[-max(1, math.ceil(share * len(last_phase))):]


def plateau_values(curve: list[dict], share: float) -> dict:
    window = plateau_epochs(curve, share)
    values = {}
    for metric in PLATEAU_METRICS:
        series = np.array([_number(line.get(f"val_{metric}")) for line in window], dtype=float)
        values[metric] = _quiet(np.nanpercentile, series, 75) if np.isfinite(series).any() else math.nan
    return values


def _quiet(function, *args, **kwargs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(function(*args, **kwargs))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for a single value)."""
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, dtype=float)
    return float(array.mean()), (_quiet(np.std, array, ddof=1) if len(array) > 1 else math.nan)


def group_cells(records: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    cells: dict[tuple, list[RunRecord]] = {}
    for record in records:
        cells.setdefault(record.cell, []).append(record)
    return dict(sorted(cells.items(), key=lambda item: _cell_order(item[0], records)))


def _cell_order(key: tuple, records: list[RunRecord]) -> tuple:
    """Grid order of the strategy entries (and colorizers, backbones), then increasing fraction."""
    first = next(i for i, r in enumerate(records) if r.cell[:3] == key[:3])
    return first, key[3]


def cell_row(key: tuple, runs: list[RunRecord]) -> dict:
    done = [r for r in runs if r.done]
    row = {"strategy": key[0], "colorizer": key[1] or "none", "backbone": key[2], "fraction": key[3],
           "runs": len(done), "failed": sum(r.status == "failed" for r in runs),
           "seeds": sorted(r.seed for r in done)}
    for source in ("test", "plateau"):
        for metric in (METRICS if source == "test" else PLATEAU_METRICS):
            mean, std = mean_std([getattr(r, source)[metric] for r in done])
            row[f"{source}_{metric}_mean"], row[f"{source}_{metric}_std"] = mean, std
    return row


def default_pairs(records: list[RunRecord]) -> list[tuple[str, str]]:
    """Every strategy against scratch (or against the first strategy), and the same for the colorizers and
    backbones axes when they have more than one value."""
    pairs = []
    for axis in AXES:
        values = _axis_values(records, axis)
        if len(values) < 2:
            continue
        base = "scratch" if axis == "strategy" and "scratch" in values else values[0]
        pairs += [(value, base) for value in values if value != base]
    return pairs


def _axis_values(records: list[RunRecord], axis: str) -> list[str]:
    index = AXES.index(axis)
    values = [_name(r.cell[index]) for r in records if axis == "strategy" or axis not in r.fixed]
    return list(dict.fromkeys(values))


def _name(value) -> str:
    return "none" if value is None else str(value)


def _pair_axis(pair: tuple[str, str], records: list[RunRecord], root: Path) -> str:
    for axis in AXES:
        values = _axis_values(records, axis)
        if pair[0] in values and pair[1] in values:
            return axis
    names = {axis: _axis_values(records, axis) for axis in AXES}
    known = "; ".join(f"{AXES_PLURAL[a]}: {', '.join(v)}" for a, v in names.items() if v)
    raise TxkitError(f"{root / 'experiment.toml'}: [report] compare: {list(pair)} are not two values of one axis "
                     f"({known})")


AXES_PLURAL = {"strategy": "strategies", "colorizer": "colorizers", "backbone": "backbones"}


def _matches(a: tuple, b: tuple, axis: str, fixed_a: list[str], fixed_b: list[str]) -> bool:
    """Cells that differ in ``axis`` only; an axis that either strategy entry fixes matches anything."""
    if a[3] != b[3]:
        return False
    for index, other in enumerate(AXES):
        if other == axis or (other != "strategy" and (other in fixed_a or other in fixed_b)):
            continue
        if a[index] != b[index]:
            return False
    return True


def compare_cells(cells: dict[tuple, list[RunRecord]], pairs: list[tuple[str, str]], root: Path) -> list[dict]:
    """Two-sided Wilcoxon signed-rank tests on the test metrics of matching cells, paired by seed."""
    records = [r for runs in cells.values() for r in runs]
    results = []
    for pair in pairs:
        axis = _pair_axis(pair, records, root)
        index = AXES.index(axis)
        for key_a, runs_a in cells.items():
            if _name(key_a[index]) != pair[0]:
                continue
            for key_b, runs_b in cells.items():
                if _name(key_b[index]) == pair[1] and _matches(key_a, key_b, axis, runs_a[0].fixed, runs_b[0].fixed):
                    results += wilcoxon_rows(pair, axis, key_a, key_b, runs_a, runs_b)
    return results


def wilcoxon_rows(pair, axis, key_a, key_b, runs_a, runs_b) -> list[dict]:
    from scipy.stats import wilcoxon

    by_seed_a = {r.seed: r for r in runs_a if r.done}
    by_seed_b = {r.seed: r for r in runs_b if r.done}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    rows = []
    for metric in METRICS:
        a = np.array([by_seed_a[s].test[metric] for s in seeds], dtype=float)
        b = np.array([by_seed_b[s].test[metric] for s in seeds], dtype=float)
        statistic, p = math.nan, math.nan
        if len(seeds) and np.isfinite(a).all() and np.isfinite(b).all():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # all-equal pairs: scipy returns p = 1 with a warning
                result = wilcoxon(a, b)
            statistic, p = float(result.statistic), float(result.pvalue)
        rows.append({"a": pair[0], "b": pair[1], "axis": axis, **_coordinates(key_a, "_a"),
                     **_coordinates(key_b, "_b"), "fraction": key_a[3], "metric": metric, "n": len(seeds),
                     "seeds": seeds, "mean_a": float(a.mean()) if len(a) else math.nan,
                     "mean_b": float(b.mean()) if len(b) else math.nan, "statistic": statistic, "p": p})
    return rows


def _coordinates(key: tuple, suffix: str) -> dict:
    return {f"{axis}{suffix}": _name(value) for axis, value in zip(AXES, key)}


def robustness_slopes(cells: dict[tuple, list[RunRecord]]) -> list[dict]:
    """metric = A·r + b over the training fraction r, fitted on every finished run of a strategy
    (scipy.stats.linregress); needs two fractions or more."""
    from scipy.stats import linregress

    groups: dict[tuple, list[RunRecord]] = {}
    for key, runs in cells.items():
        groups.setdefault(key[:3], []).extend(r for r in runs if r.done)
    slopes = []
    for (strategy, colorizer, backbone), runs in groups.items():
        for source, metric in SLOPE_METRICS:
            points = [(r.cell[3], getattr(r, source)[metric]) for r in runs]
            points = [(x, y) for x, y in points if math.isfinite(y)]
            if len({x for x, _ in points}) < 2:
                continue
            x, y = zip(*points)
            fit = _quiet_fit(linregress, x, y)
            slopes.append({"strategy": strategy, "colorizer": _name(colorizer), "backbone": backbone,
                           "metric": f"{source}_{metric}", "A": float(fit.slope), "b": float(fit.intercept),
                           "r": float(fit.rvalue), "p": float(fit.pvalue), "stderr": float(fit.stderr),
                           "n": len(points)})
    return slopes


def _quiet_fit(function, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant metric gives r = NaN with a warning; A and b are fine
        return function(x, y)


def run_counts(records: list[RunRecord], plan: Plan) -> dict:
    stage_ids = [run.id for run in plan.runs if run.kind == "stage"]
    counts: dict[str, int] = {"cells": len({r.cell for r in records}), "cell_runs": len(records),
                              "stage_runs": len(stage_ids)}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def failures(records: list[RunRecord], plan: Plan, state: ExperimentState) -> list[dict]:
    failed = [{"run": r.id, "error": r.error} for r in records if r.status == "failed"]
    failed += [{"run": run.id, "error": state.error(run.id)} for run in plan.runs
               if run.kind == "stage" and state.status(run.id) == "failed"]
    return failed


# -------------------------------------------------------------------------------------------- ROC input

def probabilities(record: RunRecord) -> dict:
    return probabilities_of_test_split(record.directory)


# ---------------------------------------------------------------------------------------------- outputs

def write_outputs(out: Path, report: dict, records: list[RunRecord]) -> None:
    from txkit.experiments.markdown import report_markdown
    from txkit.training.checkpoint import write_json

    _write_csv(out / "results.csv", [{k: v for k, v in row.items() if k != "seeds"} for row in report["cells"]])
    _write_csv(out / "runs.csv", [_run_row(r) for r in records])
    _write_csv(out / "wilcoxon.csv", [{k: v for k, v in row.items() if k != "seeds"} for row in report["wilcoxon"]])
    _write_csv(out / "slopes.csv", report["slopes"])
    (out / "results.md").write_text(report_markdown(report))
    write_json(out / "report.json", report)


def _run_row(record: RunRecord) -> dict:
    strategy, colorizer, backbone, fraction = record.cell
    row = {"run": record.id, "strategy": strategy, "colorizer": _name(colorizer), "backbone": backbone,
           "fraction": fraction, "seed": record.seed, "status": record.status, "error": record.error or ""}
    row.update({f"test_{m}": record.test.get(m, math.nan) for m in METRICS})
    row.update({f"plateau_{m}": record.plateau.get(m, math.nan) for m in PLATEAU_METRICS})
    return row


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
