"""Subgroup analysis and two-sample differences: metrics per subgroup (by sex, age bin, view) with bootstrap
intervals, the largest gap between subgroups with its interval, and the drop from one test set to another.

Per subgroup: every subgroup is scored on the same resamples of the whole evaluated set (stratified by class,
whole patients when ``groups`` are given), each resample restricted to the subgroup's cases. A patient whose
images fall in two subgroups (an AP and a PA view) is drawn for both at once, so their correlation is kept.

Too small for an interval: a subgroup with fewer than ``MIN_PER_CLASS`` (2) cases of a class that the whole set
has (multilabel: fewer than 2 known positives or negatives of a label the set has both of), or whose intervals
rest on fewer than ``MIN_VALID_SHARE`` (50 %) of the resamples (the others drew no case of the subgroup, or no
positive or negative, so the metric is undefined). Its point values are reported, its intervals are not, and it
takes no part in the gap.

Largest gap: among the subgroups large enough for an interval, the highest minus the lowest point value of each
metric; its interval is the percentile interval of the same two subgroups' difference over the resamples (the
pair is fixed on the point values; taking the max − min anew in every resample would bias the gap upwards).

Two-sample difference (:func:`two_sample_difference`): two independent test sets (a run's internal test split
and an external dataset) are resampled independently (``seed`` and ``seed + 1``), each in its own way
(stratified, whole patients), and the percentile interval of the metric's difference A − B is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from txkit.stats.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, percentile_interval
from txkit.stats.operating import OPERATING, OperatingEngine, class_truth
from txkit.stats.resampling import default_strata, make_plan, resample_weights
from txkit.stats.weighted import METRICS, MetricEngine

MIN_PER_CLASS = 2
MIN_VALID_SHARE = 0.5
GAP_METRICS = ("accuracy", "auc")
UNKNOWN = "unknown"


def subgroup_order(names) -> list[str]:
    """Subgroup names sorted, ``unknown`` last; bins like <40, 40-59, >=60 in numeric order."""
    def key(name: str):
        digits = "".join(ch if ch.isdigit() or ch == "." else " " for ch in name).split()
        try:
            first = float(digits[0]) if digits else None
        except ValueError:
            first = None
        rank = 0 if name.startswith("<") else 2 if name.startswith(">") else 1
        return (name == UNKNOWN, first is None, first if first is not None else 0.0, rank, name)

    unique = sorted({str(n) for n in names}, key=key)
    return unique


def _too_small(y_true: np.ndarray, members: np.ndarray, task: str, classes: Sequence[str]) -> str | None:
    """Why the subgroup is too small for an interval by its class counts, or None."""
    for k, name in enumerate(classes):
        positive, known = class_truth(y_true, task, k)
        whole = (int((positive & known).sum()), int((~positive & known).sum()))
        if task == "multiclass" and whole[0] and int(positive[members].sum()) < MIN_PER_CLASS:
            return f"fewer than {MIN_PER_CLASS} cases of class {name}"
        if task == "multilabel" and whole[0] and whole[1]:
            pos = int((positive & known)[members].sum())
            neg = int((~positive & known)[members].sum())
            if min(pos, neg) < MIN_PER_CLASS:
                return f"fewer than {MIN_PER_CLASS} known positives or negatives of label {name}"
    return None


def subgroup_analysis(y_true: np.ndarray, logits: np.ndarray, classes: Sequence[str], task: str,
                      values: Sequence, *, groups: np.ndarray | None = None,
                      thresholds: Sequence[float] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                      level: float = DEFAULT_LEVEL, seed: int = 0, strata="auto", macro_classes=None) -> dict:
    """Metrics of each subgroup of ``values`` (one subgroup name per case) with intervals, and the largest gaps.

    Returns {"subgroups": {name: {"n", "n_groups" (with groups), "accuracy", "precision", "recall", "f1",
    "auc", "per_class": {class: {"auc"}}, ("operating": {class: {"sensitivity", "specificity", "ppv",
    "npv"}} with thresholds), "ci": {metric: [low, high], "operating": {class: {...}}}, "n_valid": {...},
    "too_small": None or the reason}}, "gaps": {metric: {"gap", "high", "low", "between": [highest, lowest],
    "n_valid"} or {"gap": NaN, "reason"}}, "method", "level", "n_resamples", "seed", "min_valid_share",
    "min_per_class"}. Gap metrics: accuracy and macro AUC, and with ``thresholds`` each class's sensitivity and
    specificity (named "sensitivity:CLASS").
    """
    from txkit.stats.scores import probabilities

    y_true = np.asarray(y_true)
    logits = np.asarray(logits, dtype=np.float64)
    values = np.asarray([str(v) for v in values])
    if len(values) != len(y_true):
        raise ValueError(f"{len(values)} subgroup values for {len(y_true)} cases")
    names = subgroup_order(values)
    members = {name: np.flatnonzero(values == name) for name in names}
    engines = {name: MetricEngine(y_true[m], logits[m], task, macro_classes=macro_classes)
               for name, m in members.items()}
    operating = None
    if thresholds is not None:
        probs = probabilities(logits, task)
        operating = {name: OperatingEngine(y_true[m], probs[m], thresholds, task) for name, m in members.items()}
    plan = make_plan(len(y_true), default_strata(y_true, strata), groups)

    def measure(name: str, weights: np.ndarray) -> dict[str, np.ndarray]:
        got = engines[name](weights)
        out = {m: got[m] for m in METRICS}
        out.update({f"auc:{c}": got["per_class"]["auc"][:, k] for k, c in enumerate(classes)})
        if operating is not None:
            ops = operating[name](weights)
            out.update({f"{m}:{c}": ops[m][:, k] for m in OPERATING for k, c in enumerate(classes)})
        return out

    point = {name: {k: float(v[0]) for k, v in measure(name, np.ones((1, len(m)))).items()}
             for name, m in members.items()}
    stores: dict[str, list[dict]] = {name: [] for name in names}
    for weights in resample_weights(plan, n_resamples, seed):
        for name, m in members.items():
            stores[name].append(measure(name, weights[:, m]))
    replicates = {name: {k: np.concatenate([b[k] for b in blocks]) if blocks else np.empty(0) for k in point[name]}
                  for name, blocks in stores.items()}  # no blocks with n_resamples 0: no intervals
    result = {name: _subgroup(name, members[name], point[name], replicates[name], y_true, task, classes, groups,
                              operating is not None, n_resamples, level)
              for name in names}
    gap_metrics = list(GAP_METRICS)
    if operating is not None:
        gap_metrics += [f"{m}:{c}" for c in classes for m in ("sensitivity", "specificity")]
    gaps = {metric: _gap(metric, result, point, replicates, n_resamples, level) for metric in gap_metrics}
    return {"subgroups": result, "gaps": gaps, "method": plan.method, "level": level, "n_resamples": n_resamples,
            "seed": seed, "min_valid_share": MIN_VALID_SHARE, "min_per_class": MIN_PER_CLASS}


def _subgroup(name, members, point, replicates, y_true, task, classes, groups, with_operating, n_resamples,
              level) -> dict:
    entry: dict = {"n": int(len(members))}
    if groups is not None:
        entry["n_groups"] = int(len(np.unique(np.asarray(groups)[members])))
    entry.update({m: point[m] for m in METRICS})
    entry["per_class"] = {c: {"auc": point[f"auc:{c}"]} for c in classes}
    if with_operating:
        entry["operating"] = {c: {m: point[f"{m}:{c}"] for m in OPERATING} for c in classes}
    intervals, valid = {}, {}
    for key, series in replicates.items():
        low, high, valid[key] = percentile_interval(series, level)
        intervals[key] = [low, high]
    reason = _too_small(y_true, members, task, classes)
    if reason is None:
        thin = [m for m in GAP_METRICS if np.isfinite(point[m]) and valid[m] < MIN_VALID_SHARE * n_resamples]
        if thin:
            reason = (f"the {thin[0]} interval rests on {valid[thin[0]]} of {n_resamples} resamples, under "
                      f"{MIN_VALID_SHARE:.0%}")
    entry["too_small"] = reason
    nan = [float("nan"), float("nan")]
    shown = {key: (nan if reason else value) for key, value in intervals.items()}
    entry["ci"] = {m: shown[m] for m in METRICS}
    entry["ci"]["per_class"] = {c: {"auc": shown[f"auc:{c}"]} for c in classes}
    if with_operating:
        entry["ci"]["operating"] = {c: {m: shown[f"{m}:{c}"] for m in OPERATING} for c in classes}
    entry["n_valid"] = {m: valid[m] for m in METRICS}
    return entry


def _gap(metric: str, result: dict, point: dict, replicates: dict, n_resamples: int, level: float) -> dict:
    usable = [name for name, entry in result.items() if entry["too_small"] is None and np.isfinite(point[name][metric])]
    if len(usable) < 2:
        return {"gap": float("nan"), "low": float("nan"), "high": float("nan"), "between": [],
                "reason": f"{len(usable)} subgroup(s) large enough for an interval; a gap needs 2"}
    ranked = sorted(usable, key=lambda name: point[name][metric])  # stable: equal values keep two names
    lowest, highest = ranked[0], ranked[-1]
    gap = point[highest][metric] - point[lowest][metric]
    low, high, valid = percentile_interval(replicates[highest][metric] - replicates[lowest][metric], level)
    out = {"gap": float(gap), "low": low, "high": high, "between": [highest, lowest], "n_valid": valid}
    if valid < MIN_VALID_SHARE * n_resamples:
        out.update(low=float("nan"), high=float("nan"),
                   reason=f"the interval rests on {valid} of {n_resamples} resamples, under {MIN_VALID_SHARE:.0%}")
    return out


def two_sample_difference(y_a: np.ndarray, logits_a: np.ndarray, y_b: np.ndarray, logits_b: np.ndarray,
                          task: str, *, metrics: Sequence[str] = ("accuracy", "auc"),
                          groups_a: np.ndarray | None = None, groups_b: np.ndarray | None = None,
                          macro_classes_a=None, macro_classes_b=None, n_resamples: int = DEFAULT_RESAMPLES,
                          level: float = DEFAULT_LEVEL, seed: int = 0) -> dict:
    """{metric: {"a", "b", "difference" (a − b), "low", "high", "n_valid"}} for two independent sets of cases,
    each resampled on its own (stratified by class, whole groups), A with ``seed`` and B with ``seed + 1``."""
    sides = []
    for y, logits, groups, macro, offset in ((y_a, logits_a, groups_a, macro_classes_a, 0),
                                             (y_b, logits_b, groups_b, macro_classes_b, 1)):
        y = np.asarray(y)
        engine = MetricEngine(y, logits, task, macro_classes=macro)
        plan = make_plan(len(y), default_strata(y, "auto"), groups)
        blocks = [engine(w) for w in resample_weights(plan, n_resamples, seed + offset)]
        ones = engine(np.ones((1, len(y))))
        sides.append(({m: float(ones[m][0]) for m in metrics},
                      {m: np.concatenate([b[m] for b in blocks]) for m in metrics}))
    out = {}
    for m in metrics:
        (point_a, reps_a), (point_b, reps_b) = sides
        low, high, valid = percentile_interval(reps_a[m] - reps_b[m], level)
        out[m] = {"a": point_a[m], "b": point_b[m], "difference": point_a[m] - point_b[m], "low": low,
                  "high": high, "n_valid": valid}
    return out
