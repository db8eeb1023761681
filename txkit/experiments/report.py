"""`txkit experiment report DIR`: the results table, representative values, Wilcoxon tests, robustness slopes
and plots of an experiment directory, written to DIR/report/.

A *cell* is one point of the grid without the seed (strategy × colorizer × backbone × fraction); its runs
are that cell at each seed, and statistics over seeds are taken per cell.

Representative value (Suzuki et al., IPSJ TOM 2018, "the 75th percentile of a plateau"): the *plateau* of
a run is the last ``plateau`` share (default one half, rounded up, at least one epoch) of the epochs of its
last phase in metrics.jsonl; its representative value of a validation metric is the 75th percentile of that
metric over the plateau (numpy.percentile, linear interpolation). For the loss the 75th percentile is the
pessimistic side, as in the paper, which used it for every metric.

With ``[grid] folds = K`` a cell's runs are its folds (x repeats x seeds): the cross-validation section
(pooled out-of-fold metrics, per-fold mean ± sd, corrected t-test and DeLong over folds) is made by
:mod:`txkit.experiments.crossval`, and the Wilcoxon and per-seed paired tests below are not.

Intervals and paired tests come from each run's test predictions (predictions_test.npz, or predicted with the
run's best weights when it has none): a cell shows the 95 % bootstrap intervals of its first finished seed's
run, and each compared pair of cells gets, per seed they share, DeLong's test of the AUCs and paired-bootstrap
intervals of the differences in AUC and accuracy on the same test images.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from txkit.errors import TxkitError
from txkit.rundir import RunDir
from txkit.experiments.crossval import compare_rows, crossval_report, folded
from txkit.experiments.plan import PLAN_FILE, Plan, PlannedRun
from txkit.experiments.predictions import predictions_of_test_split
from txkit.experiments.spec import (Checker, ReportOptions, apply_overrides, load_external, parse_report_options,
                                   read_toml)
from txkit.experiments.validation import external_rows, subgroup_csv_rows, subgroup_rows
from txkit.experiments.state import DONE, ExperimentState

METRICS = ("accuracy", "precision", "recall", "f1", "auc")
PLATEAU_METRICS = METRICS + ("loss",)
SLOPE_METRICS = (("test", "accuracy"), ("test", "f1"), ("test", "auc"), ("plateau", "accuracy"),
                 ("plateau", "loss"))
AXES = ("strategy", "colorizer", "backbone")
REPORT_DIR = "report"
LEVEL, RESAMPLES = 0.95, 1000  # confidence level and bootstrap resamples of the intervals and paired tests


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
    predicted: dict | None = None  # test predictions, loaded on first use (see record_predictions)
    prediction_error: str | None = None
    folds: int | None = None  # [grid] folds: K, with this run's fold and repeat
    fold: int | None = None
    repeat: int = 0
    oof: dict | None = None  # out-of-fold predictions, loaded on first use (see crossval.run_oof)
    oof_error: str | None = None

    @property
    def done(self) -> bool:
        return self.status == DONE

    @property
    def tested(self) -> bool:
        """Finished with a test split (a dataset without one leaves the test metrics NaN)."""
        return self.done and math.isfinite(self.test.get("accuracy", math.nan))


def build_report(root: str | Path) -> dict:
    """Write DIR/report/{results.md, results.csv, runs.csv, wilcoxon.csv, paired.csv, slopes.csv, report.json,
    *.png}, and with [external] tables external.csv, with [report] by subgroups.csv."""
    from txkit.experiments import plots
    from txkit.experiments.markdown import add_sentences

    root = Path(root).resolve()
    plan, state, options = load_experiment_dir(root)
    records = [run_record(root, run, state, options.plateau) for run in plan.cells()]
    cells = group_cells(records)
    rows = [{**cell_row(key, runs), **cell_intervals(runs)} for key, runs in cells.items()]
    pairs = options.compare or default_pairs(records)
    crossval = None
    if folded(records):  # runs are folds, not independent seeds: tested over folds instead (crossval.py)
        comparisons, paired = [], []
        crossval = crossval_report(cells, pairs, root, matching_cells, LEVEL, RESAMPLES)
    else:
        comparisons = compare_cells(cells, pairs, root)
        paired = paired_tests(cells, pairs, root)
    add_sentences(paired, rows)
    slopes = robustness_slopes(cells)
    externals = load_external(root)
    chosen = [(key, first, record_predictions(first)) for key, first in
              ((key, first_tested(runs)) for key, runs in cells.items()) if first is not None]
    external = external_rows(chosen, externals, LEVEL, RESAMPLES) if externals else []
    subgroups = subgroup_rows(chosen, externals, options, LEVEL, RESAMPLES) if options.by else []
    out = root / REPORT_DIR
    out.mkdir(exist_ok=True)
    figures = plots.make_plots(out, records, rows, slopes, options.roc, record_predictions)
    report = {"experiment": plan.experiment, "directory": str(root), "plateau": options.plateau,
              "runs": run_counts(records, plan), "cells": rows, "wilcoxon": comparisons, "paired": paired,
              "level": LEVEL, "resamples": RESAMPLES, "slopes": slopes, "plots": [p.name for p in figures],
              "failed": failures(records, plan, state),
              "no_predictions": [{"run": r.id, "error": r.prediction_error} for r in records if r.prediction_error],
              "external": external, "subgroups": subgroups}
    if crossval is not None:
        report["crossval"] = crossval
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
                       state.error(run.id), root / run.directory, folds=run.cell.get("folds"),
                       fold=run.cell.get("fold"), repeat=run.cell.get("repeat", 0))
    run_dir = RunDir(record.directory)
    summary = run_dir.summary() if record.done else None
    if summary is not None:
        test = summary.get("test") or {}
        record.test = {m: _number(test.get(m)) for m in METRICS}
        record.curve = run_dir.metrics()
        record.plateau = plateau_values(record.curve, plateau)
    elif record.done:
        record.status = "missing"  # recorded as done, but its run directory is gone
    return record


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


def matching_cells(cells: dict[tuple, list[RunRecord]], pairs: list[tuple[str, str]], root: Path):
    """(pair, axis, key_a, key_b, runs_a, runs_b) for every two cells a compare pair sets side by side."""
    records = [r for runs in cells.values() for r in runs]
    for pair in pairs:
        axis = _pair_axis(pair, records, root)
        index = AXES.index(axis)
        for key_a, runs_a in cells.items():
            if _name(key_a[index]) != pair[0]:
                continue
            for key_b, runs_b in cells.items():
                if _name(key_b[index]) == pair[1] and _matches(key_a, key_b, axis, runs_a[0].fixed, runs_b[0].fixed):
                    yield pair, axis, key_a, key_b, runs_a, runs_b


def compare_cells(cells: dict[tuple, list[RunRecord]], pairs: list[tuple[str, str]], root: Path) -> list[dict]:
    """Two-sided Wilcoxon signed-rank tests on the test metrics of matching cells, paired by seed."""
    results = []
    for match in matching_cells(cells, pairs, root):
        results += wilcoxon_rows(*match)
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


# ------------------------------------------------------------------------- test predictions and intervals

def record_predictions(record: RunRecord) -> dict | None:
    """The run's test predictions (stored, or predicted once now), None for a run without a test split or
    whose predictions cannot be had (the reason is kept in ``prediction_error`` and shown in the report)."""
    if not record.tested or record.prediction_error:
        return None
    if record.predicted is None:
        try:
            record.predicted = predictions_of_test_split(record.directory)
        except TxkitError as exc:
            record.prediction_error = str(exc).splitlines()[0]
            return None
    return record.predicted


INTERVAL_KEYS = [f"ci_{m}{end}" for m in METRICS for end in ("", "_low", "_high")] + \
    ["ci_auc_delong_low", "ci_auc_delong_high"]


def first_tested(runs: list[RunRecord]) -> RunRecord | None:
    """The cell's run of its first finished seed with test predictions: the one its intervals, external
    validation and subgroup tables show."""
    return next((r for r in sorted(runs, key=lambda r: r.seed) if record_predictions(r) is not None), None)


def cell_intervals(runs: list[RunRecord]) -> dict:
    """The 95 % intervals of the cell's first finished seed with test predictions (NaN when there is none):
    ci_seed, ci_method, ci_METRIC (that run's value), ci_METRIC_low/high, ci_auc_delong_low/high."""
    first = first_tested(runs)
    if first is None:
        return {"ci_seed": None, "ci_method": "", **{k: math.nan for k in INTERVAL_KEYS}}
    return {"ci_seed": first.seed, **run_intervals(record_predictions(first))}


def run_intervals(predicted: dict) -> dict:
    from txkit.stats import bootstrap_metrics, delong_per_class
    from txkit.training.metrics import compute_metrics_from_logits

    y_true, logits, classes, task = (predicted[k] for k in ("y_true", "logits", "classes", "task"))
    point = compute_metrics_from_logits(y_true, logits, classes, task)
    ci = bootstrap_metrics(y_true, logits, classes, task, n_resamples=RESAMPLES, level=LEVEL,
                           groups=predicted["groups"])
    delong = delong_per_class(y_true, logits, classes, task, level=LEVEL)
    out = {"ci_method": f"{ci['method']}, {RESAMPLES} resamples"}
    for m in METRICS:
        out[f"ci_{m}"], (out[f"ci_{m}_low"], out[f"ci_{m}_high"]) = point[m], ci[m]
    out["ci_auc_delong_low"], out["ci_auc_delong_high"] = delong["low"], delong["high"]
    return out


def paired_tests(cells: dict[tuple, list[RunRecord]], pairs: list[tuple[str, str]], root: Path) -> list[dict]:
    """Per two compared cells: DeLong's test and paired-bootstrap differences for each seed both finished
    (the two runs of a seed scored the same test images), and verdicts on AUC and accuracy at LEVEL."""
    results = []
    for pair, axis, key_a, key_b, runs_a, runs_b in matching_cells(cells, pairs, root):
        by_seed_b = {r.seed: r for r in runs_b if r.tested}
        seeds = [paired_seed(a, by_seed_b[a.seed]) for a in sorted(runs_a, key=lambda r: r.seed)
                 if a.tested and a.seed in by_seed_b]
        results.append({"a": pair[0], "b": pair[1], "axis": axis, **_coordinates(key_a, "_a"),
                        **_coordinates(key_b, "_b"), "fraction": key_a[3], "level": LEVEL, "seeds": seeds,
                        **judge(seeds, LEVEL)})
    return results


def paired_seed(run_a: RunRecord, run_b: RunRecord) -> dict:
    """DeLong (macro AUC, one-vs-rest) and paired-bootstrap intervals of A − B on one seed's test images."""
    a, b = record_predictions(run_a), record_predictions(run_b)
    if a is None or b is None:
        missing = run_a if a is None else run_b
        return {"seed": run_a.seed, "error": f"no test predictions of {missing.id}: {missing.prediction_error}"}
    same = a["ids"] == b["ids"] and np.array_equal(np.asarray(a["y_true"], float), np.asarray(b["y_true"], float),
                                                   equal_nan=True)
    if not same:
        return {"seed": run_a.seed, "error": f"{run_a.id} and {run_b.id} were tested on different images"}
    from txkit.stats import delong_compare, paired_bootstrap_difference

    y_true, classes, task, groups = a["y_true"], a["classes"], a["task"], a["groups"]
    delong = delong_compare(y_true, a["logits"], b["logits"], classes, task, level=LEVEL)
    out = {"seed": run_a.seed, "n": int(len(y_true)), "auc_a": delong["auc_a"], "auc_b": delong["auc_b"],
           "delong_difference": delong["difference"], "delong_p": delong["p_value"]}
    for metric in ("auc", "accuracy"):
        diff = paired_bootstrap_difference(y_true, a["logits"], b["logits"], metric, task=task, level=LEVEL,
                                           n_resamples=RESAMPLES, groups=groups)
        out.update({f"{metric}_difference": diff["difference"], f"{metric}_difference_low": diff["low"],
                    f"{metric}_difference_high": diff["high"], f"{metric}_bootstrap_p": diff["p_value"]})
    out["method"] = f"DeLong; {diff['method']}, {RESAMPLES} resamples"
    return out


def judge(seeds: list[dict], level: float) -> dict:
    """{"verdict" (AUC), "accuracy_verdict"} over the seeds of a pair; each seed gets "auc_differs" and
    "accuracy_differs": +1 or −1 when A − B differs from 0 at ``level`` in that direction (AUC: DeLong p below
    1 − level; accuracy: its paired-bootstrap interval excludes 0), 0 when not, None when undefined."""
    for seed in seeds:
        if "error" not in seed:
            seed["auc_differs"] = _auc_differs(seed, level)
            seed["accuracy_differs"] = _interval_differs(seed, "accuracy")
    return {"verdict": verdict(seeds, "auc"), "accuracy_verdict": verdict(seeds, "accuracy")}


def _auc_differs(seed: dict, level: float) -> int | None:
    p, difference = seed["delong_p"], seed["delong_difference"]
    if not math.isfinite(p):
        return None
    return int(np.sign(difference)) if p < 1 - level else 0


def _interval_differs(seed: dict, metric: str) -> int | None:
    low, high = seed[f"{metric}_difference_low"], seed[f"{metric}_difference_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return 1 if low > 0 else -1 if high < 0 else 0


def verdict(seeds: list[dict], metric: str = "auc") -> str:
    """Over the seeds that :func:`judge` marked: indistinguishable when none differs; "a higher" or "b higher"
    when every one differs in one direction; inconsistent otherwise; untested without a usable seed."""
    calls = [s[f"{metric}_differs"] for s in seeds if s.get(f"{metric}_differs") is not None]
    if not calls:
        return "untested"
    if not any(calls):
        return "indistinguishable"
    if all(c == calls[0] for c in calls):
        return "a higher" if calls[0] > 0 else "b higher"
    return "inconsistent"


# ---------------------------------------------------------------------------------------------- outputs

def write_outputs(out: Path, report: dict, records: list[RunRecord]) -> None:
    from txkit.experiments.markdown import report_markdown
    from txkit.storage import write_json

    _write_csv(out / "results.csv", [{k: v for k, v in row.items() if k != "seeds"} for row in report["cells"]])
    _write_csv(out / "runs.csv", [_run_row(r) for r in records])
    _write_csv(out / "wilcoxon.csv", [{k: v for k, v in row.items() if k != "seeds"} for row in report["wilcoxon"]])
    _write_csv(out / "paired.csv", paired_rows(report["paired"]))
    _write_csv(out / "slopes.csv", report["slopes"])
    if report["external"]:
        _write_csv(out / "external.csv", report["external"])
    if report["subgroups"]:
        _write_csv(out / "subgroups.csv", subgroup_csv_rows(report["subgroups"]))
    if "crossval" in report:
        _write_csv(out / "crossval.csv", report["crossval"]["cells"])
        _write_csv(out / "crossval_compare.csv", compare_rows(report["crossval"]["compare"]))
    (out / "results.md").write_text(report_markdown(report))
    write_json(out / "report.json", report)


PAIRED_COLUMNS = ["seed", "n", "auc_a", "auc_b", "delong_difference", "delong_p", "auc_difference",
                  "auc_difference_low", "auc_difference_high", "auc_bootstrap_p", "accuracy_difference",
                  "accuracy_difference_low", "accuracy_difference_high", "accuracy_bootstrap_p", "auc_differs",
                  "accuracy_differs", "method", "error"]


def paired_rows(paired: list[dict]) -> list[dict]:
    """One CSV row per compared pair of cells and seed."""
    rows = []
    for test in paired:
        head = {k: v for k, v in test.items() if k not in ("seeds", "sentence")}
        rows += [{**head, **{c: seed.get(c, "") for c in PAIRED_COLUMNS}} for seed in test["seeds"]]
    return rows


def _run_row(record: RunRecord) -> dict:
    strategy, colorizer, backbone, fraction = record.cell
    row = {"run": record.id, "strategy": strategy, "colorizer": _name(colorizer), "backbone": backbone,
           "fraction": fraction, "seed": record.seed, "status": record.status, "error": record.error or ""}
    if record.folds:
        row.update(fold=record.fold, repeat=record.repeat)
    row.update({f"test_{m}": record.test.get(m, math.nan) for m in METRICS})
    row.update({f"plateau_{m}": record.plateau.get(m, math.nan) for m in PLATEAU_METRICS})
    return row


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        if rows:  # every key of every row: a row with an error has other columns than the others
            writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
