"""Bootstrap confidence intervals: stratified by class, or clustered by patient, seeded, percentile.

Intervals are percentile intervals (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13):
the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles (numpy's linear interpolation) of the metric over the
resamples. scipy.stats.bootstrap offers BCa, but it resamples cases independently and cannot keep class counts
fixed nor resample whole patients, and its jackknife acceleration would have to be redefined for clusters; the
resampling is therefore done here (:mod:`txkit.stats.resampling`) and the percentile interval is used, which
needs nothing beyond the resampled values and is transformation-respecting.

A resample in which a metric is undefined (an AUC with one class present) is skipped for that metric only;
the number of resamples each interval rests on is reported as ``n_valid``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from txkit.stats.resampling import Plan, default_strata, make_plan, resample_indices, resample_weights
from txkit.stats.weighted import METRICS, PER_CLASS, MetricEngine

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def percentile_interval(values: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float, int]:
    """(low, high, number of finite values) of the percentile interval of the finite ``values``."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan"), 0
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high), int(len(finite))


def _plan(y_true, strata, groups) -> Plan:
    return make_plan(len(y_true), default_strata(y_true, strata), groups)


def _header(plan: Plan, n_resamples: int, level: float, seed: int) -> dict:
    out = {"method": plan.method, "interval": "percentile", "n_resamples": int(n_resamples), "level": level,
           "seed": seed}
    if plan.clustered:
        out["n_groups"] = plan.n_units
    return out


def bootstrap_ci(metric_fn: Callable[[np.ndarray, np.ndarray], float], y_true: np.ndarray, scores: np.ndarray,
                 *, n_resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
                 strata="auto", groups: np.ndarray | None = None) -> dict:
    """Percentile bootstrap interval of any ``metric_fn(y_true[idx], scores[idx]) -> float``.

    ``strata``: "auto" stratifies by ``y_true`` when it holds one label per case (multiclass), and not at all
    for a 2-D ``y_true`` (multilabel); None: no stratification; or one stratum value per case. ``groups``:
    one patient/study id per case for a cluster bootstrap. A non-finite metric value skips that resample.

    Returns {"estimate", "low", "high", "std_error", "n_valid", "method", "interval", "n_resamples",
    "level", "seed"} (+ "n_groups"); ``std_error`` is the standard deviation of the valid resampled values.
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    plan = _plan(y_true, strata, groups)
    values = np.array([metric_fn(y_true[idx], scores[idx]) for idx in resample_indices(plan, n_resamples, seed)],
                      dtype=np.float64)
    low, high, valid = percentile_interval(values, level)
    finite = values[np.isfinite(values)]
    return {"estimate": float(metric_fn(y_true, scores)), "low": low, "high": high,
            "std_error": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"), "n_valid": valid,
            **_header(plan, n_resamples, level, seed)}


def _replicates(engines: Sequence[MetricEngine], plan: Plan, n_resamples: int, seed: int) -> list[dict]:
    """Every engine's metrics over the same resamples, concatenated over blocks."""
    blocks: list[list[dict]] = [[] for _ in engines]
    for weights in resample_weights(plan, n_resamples, seed):
        for store, engine in zip(blocks, engines):
            store.append(engine(weights))
    out = []
    for store in blocks:
        merged = {m: np.concatenate([b[m] for b in store]) for m in METRICS}
        merged["per_class"] = {m: np.concatenate([b["per_class"][m] for b in store]) for m in PER_CLASS}
        out.append(merged)
    return out


def bootstrap_metrics(y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], task: str, *,
                      n_resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
                      strata="auto", groups: np.ndarray | None = None, scores_kind: str = "logits",
                      macro_classes=None) -> dict:
    """Percentile intervals of every reported metric, all computed from the same resamples at once.

    ``y_true``: int labels (N,) for "multiclass", float (N, C) with NaN = unknown for "multilabel";
    ``scores``: logits (N, C) (``scores_kind="logits"``, the default: thresholded metrics from the softmax or
    sigmoid, AUC from :func:`~txkit.stats.scores.ranking_scores`), or probabilities (``scores_kind="probs"``,
    AUC from the probabilities, which may tie when saturated). ``strata``/``groups`` as in :func:`bootstrap_ci`.
    ``macro_classes``: the class indices the macro values average over (default all).

    Returns {"accuracy", "precision", "recall", "f1", "auc": [low, high], "per_class": {class: {"precision",
    "recall", "f1", "auc": [low, high]}}, "n_valid": the same shape with counts of valid resamples,
    "method", "interval", "n_resamples", "level", "seed"} (+ "n_groups" with groups).
    """
    engine = MetricEngine(y_true, scores, task, scores_kind, macro_classes)
    if len(classes) != engine.n_classes:
        raise ValueError(f"{len(classes)} class names for {engine.n_classes} score columns")
    plan = _plan(np.asarray(y_true), strata, groups)
    reps = _replicates([engine], plan, n_resamples, seed)[0]
    out = _header(plan, n_resamples, level, seed)
    valid: dict = {}
    for m in METRICS:
        low, high, valid[m] = percentile_interval(reps[m], level)
        out[m] = [low, high]
    out["per_class"], valid["per_class"] = {}, {}
    for k, c in enumerate(classes):
        out["per_class"][c], valid["per_class"][c] = {}, {}
        for m in PER_CLASS:
            low, high, valid["per_class"][c][m] = percentile_interval(reps["per_class"][m][:, k], level)
            out["per_class"][c][m] = [low, high]
    out["n_valid"] = valid
    return out


def point_metrics(y_true: np.ndarray, scores: np.ndarray, task: str, scores_kind: str = "logits") -> dict:
    """The metrics of the data as they are (every multiplicity 1), in the engine's layout; for checks."""
    engine = MetricEngine(y_true, scores, task, scores_kind)
    got = engine(np.ones((1, engine.n)))
    return {**{m: float(got[m][0]) for m in METRICS},
            "per_class": {m: got["per_class"][m][0].tolist() for m in PER_CLASS}}


def paired_bootstrap_difference(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                                metric: str | Callable[[np.ndarray, np.ndarray], float] = "auc", *,
                                task: str = "multiclass", cls: int | None = None,
                                n_resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
                                strata="auto", groups: np.ndarray | None = None,
                                scores_kind: str = "logits") -> dict:
    """Interval of ``metric(a) - metric(b)`` for two models scored on the same cases, each resample drawn once
    and used for both models (and whole groups when ``groups`` are given), so the case-to-case variation both
    models share cancels.

    ``metric``: one of "accuracy", "precision", "recall", "f1", "auc" (the macro value, or class index ``cls``'s
    value for the last four), computed by the vectorised engine from logits/probabilities as in
    :func:`bootstrap_metrics`; or any ``metric_fn(y_true, scores) -> float``.

    Returns {"metric", "estimate_a", "estimate_b", "difference", "low", "high", "p_value", "n_valid", ...}.
    ``p_value`` is two-sided, from inverting the percentile interval: ``min(1, 2 min(P*(d <= 0), P*(d >= 0)))``
    over the valid resampled differences ``d``, i.e. one minus the largest level whose percentile interval
    still excludes 0 (resolution 1/n_resamples); it is 1 for identical models. Prefer :func:`delong_test`
    for AUCs.
    """
    y_true = np.asarray(y_true)
    scores_a, scores_b = np.asarray(scores_a), np.asarray(scores_b)
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"the two models' scores differ in shape: {scores_a.shape} != {scores_b.shape}")
    plan = _plan(y_true, strata, groups)
    if callable(metric):
        name = getattr(metric, "__name__", "metric")
        estimate_a, estimate_b = float(metric(y_true, scores_a)), float(metric(y_true, scores_b))
        diffs = np.array([metric(y_true[i], scores_a[i]) - metric(y_true[i], scores_b[i])
                          for i in resample_indices(plan, n_resamples, seed)], dtype=np.float64)
    else:
        if metric not in METRICS or (cls is not None and metric not in PER_CLASS):
            raise ValueError(f"metric must be one of {METRICS} (per class: {PER_CLASS}) or a callable, "
                             f"not {metric!r}")
        name = metric if cls is None else f"{metric}[{cls}]"
        engines = [MetricEngine(y_true, s, task, scores_kind) for s in (scores_a, scores_b)]

        def pick(values: dict) -> np.ndarray:
            return values[metric] if cls is None else values["per_class"][metric][:, cls]

        ones = np.ones((1, len(y_true)))
        estimate_a, estimate_b = (float(pick(e(ones))[0]) for e in engines)
        reps = _replicates(engines, plan, n_resamples, seed)
        diffs = pick(reps[0]) - pick(reps[1])
    low, high, valid = percentile_interval(diffs, level)
    finite = diffs[np.isfinite(diffs)]
    p = float(min(1.0, 2 * min(np.mean(finite <= 0), np.mean(finite >= 0)))) if len(finite) else float("nan")
    return {"metric": name, "estimate_a": estimate_a, "estimate_b": estimate_b,
            "difference": estimate_a - estimate_b, "low": low, "high": high, "p_value": p, "n_valid": valid,
            **_header(plan, n_resamples, level, seed)}
