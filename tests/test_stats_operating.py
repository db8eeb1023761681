"""Operating points, subgroup analysis and two-sample differences (txkit.stats.operating, txkit.stats.subgroups)
against brute force and hand computations; the age bins of per-image metadata (txkit.datasets.metadata)."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from txkit.datasets.metadata import age_bin_labels, bin_ages, parse_age_bins
from txkit.errors import DataError
from txkit.stats import (bootstrap_metrics, bootstrap_operating_points, choose_threshold, operating_points,
                         probabilities, subgroup_analysis, two_sample_difference)
from txkit.stats.resampling import make_plan, resample_indices
from txkit.training.metrics import compute_metrics_from_logits


def binary_data(n=120, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(1.2 * y + rng.normal(0, 1, n))))
    if ties:
        score = np.round(score, 1)
    return y.astype(bool), score


def brute_force(positive, scores, rule, target=None):
    """Every distinct score as a threshold, from the highest down; the rule's pick, ties to the highest."""
    best, best_value = None, -np.inf
    candidates = sorted(set(scores.tolist()), reverse=True)
    for t in candidates:
        called = scores >= t
        tp, fp = (called & positive).sum(), (called & ~positive).sum()
        fn, tn = (~called & positive).sum(), (~called & ~positive).sum()
        sens, spec = tp / (tp + fn), tn / (tn + fp)
        if rule == "youden" and sens + spec - 1 > best_value:
            best, best_value = t, sens + spec - 1
        if rule == "f1" and 2 * tp / (2 * tp + fp + fn) > best_value:
            best, best_value = t, 2 * tp / (2 * tp + fp + fn)
        if rule == "sensitivity" and sens >= target:
            return t
        if rule == "specificity" and spec >= target:
            best = t  # keep lowering while the specificity holds
        if rule == "specificity" and spec < target:
            break
    return np.inf if best is None else best


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("rule, target", [("youden", None), ("f1", None), ("sensitivity", 0.9),
                                          ("sensitivity", 0.5), ("specificity", 0.95), ("specificity", 0.8)])
def test_choose_threshold_is_the_brute_force_choice(rule, target, ties):
    positive, scores = binary_data(ties=ties)
    chosen = choose_threshold(positive, scores, rule, target)
    assert chosen["threshold"] == brute_force(positive, scores, rule, target)
    called = scores >= chosen["threshold"]
    assert chosen["sensitivity"] == (called & positive).sum() / positive.sum()
    assert chosen["specificity"] == (~called & ~positive).sum() / (~positive).sum()
    if rule == "sensitivity":
        assert chosen["sensitivity"] >= target
    if rule == "specificity":
        assert chosen["specificity"] >= target


def test_a_sensitivity_of_nine_tenths_reaches_a_target_of_0_9():
    positive = np.array([True] * 10 + [False] * 10)
    scores = np.r_[np.linspace(0.55, 0.95, 9), 0.1, np.linspace(0.0, 0.5, 10)]
    assert choose_threshold(positive, scores, "sensitivity", 0.9)["threshold"] == pytest.approx(0.55)


def test_a_class_without_positives_has_no_threshold():
    chosen = choose_threshold(np.zeros(5, bool), np.linspace(0, 1, 5), "youden")
    assert np.isnan(chosen["threshold"]) and "no positive" in chosen["reason"]


def test_operating_points_are_the_confusion_counts_at_the_thresholds():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    logits = rng.normal(0, 1, (90, 3)) + np.eye(3)[y]
    probs = probabilities(logits, "multiclass")
    thresholds = [0.3, 0.4, 0.5]
    points = operating_points(y, probs, thresholds, ["a", "b", "c"], "multiclass")
    for k, name in enumerate("abc"):
        tn, fp, fn, tp = confusion_matrix(y == k, probs[:, k] >= thresholds[k]).ravel()
        got = points[name]
        assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (tp, fp, fn, tn)
        assert got["sensitivity"] == tp / (tp + fn) and got["specificity"] == tn / (tn + fp)
        assert got["ppv"] == tp / (tp + fp) and got["npv"] == tn / (tn + fn)


def test_multilabel_operating_points_leave_unknown_labels_out():
    y = np.array([[1, np.nan], [0, 1], [1, 0], [np.nan, 0]], dtype=float)
    probs = np.array([[0.9, 0.9], [0.2, 0.8], [0.4, 0.3], [0.9, 0.1]])
    points = operating_points(y, probs, [0.5, 0.5], ["x", "y"], "multilabel")
    assert (points["x"]["tp"], points["x"]["fn"], points["x"]["tn"], points["x"]["fp"]) == (1, 1, 1, 0)
    assert points["y"]["tp"] + points["y"]["fn"] + points["y"]["tn"] + points["y"]["fp"] == 3


def test_operating_point_intervals_come_from_the_bootstrap_resamples():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 60)
    probs = probabilities(np.c_[np.zeros(60), 1.5 * y + rng.normal(0, 1, 60)], "multiclass")
    groups = np.repeat(np.arange(30), 2)
    got = bootstrap_operating_points(y, probs, [0.5, 0.5], ["n", "p"], "multiclass", n_resamples=300, seed=3,
                                     groups=groups)
    plan = make_plan(len(y), y, groups)
    sens = []
    for idx in resample_indices(plan, 300, 3):
        called, positive = probs[idx, 1] >= 0.5, y[idx] == 1
        sens.append((called & positive).sum() / positive.sum() if positive.any() else np.nan)
    sens = np.asarray(sens)
    expected = np.quantile(sens[np.isfinite(sens)], [0.025, 0.975])
    np.testing.assert_allclose(got["p"]["sensitivity"], expected, atol=1e-12)
    assert got["n_valid"]["p"]["sensitivity"] == int(np.isfinite(sens).sum())


def test_subgroup_metrics_are_those_of_each_subgroups_cases_and_the_gap_is_their_difference():
    rng = np.random.default_rng(4)
    n = 200
    y = rng.integers(0, 2, n)
    sex = np.where(rng.random(n) < 0.5, "F", "M").astype(object)
    logits = np.c_[np.zeros(n), (1.0 + (sex == "F")) * y + rng.normal(0, 1, n)]  # better on F
    sex[:3] = "unknown"  # three cases: too small for an interval
    result = subgroup_analysis(y, logits, ["n", "p"], "multiclass", sex, n_resamples=300, seed=0)
    groups = result["subgroups"]
    assert list(groups) == ["F", "M", "unknown"]
    for name in ("F", "M"):
        rows = sex == name
        expected = compute_metrics_from_logits(y[rows], logits[rows], ["n", "p"], "multiclass")
        assert groups[name]["auc"] == pytest.approx(expected["auc"], abs=1e-12)
        assert groups[name]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
        assert groups[name]["too_small"] is None and np.isfinite(groups[name]["ci"]["auc"]).all()
    assert groups["unknown"]["too_small"] and np.isnan(groups["unknown"]["ci"]["auc"]).all()
    gap = result["gaps"]["auc"]
    assert gap["between"] == ["F", "M"]  # the unknown subgroup takes no part
    assert gap["gap"] == pytest.approx(groups["F"]["auc"] - groups["M"]["auc"], abs=1e-12)
    assert gap["low"] < gap["gap"] < gap["high"]


def test_a_gap_needs_two_subgroups_large_enough():
    y = np.array([0, 1] * 10)
    logits = np.c_[np.zeros(20), y + 0.1]
    values = ["a"] * 19 + ["b"]
    gap = subgroup_analysis(y, logits, ["n", "p"], "multiclass", values, n_resamples=50)["gaps"]["accuracy"]
    assert np.isnan(gap["gap"]) and "1 subgroup(s) large enough" in gap["reason"]


def test_two_sample_difference_resamples_each_set_on_its_own():
    rng = np.random.default_rng(5)
    y_a, y_b = rng.integers(0, 2, 80), rng.integers(0, 2, 60)
    logits_a = np.c_[np.zeros(80), 2 * y_a + rng.normal(0, 1, 80)]
    logits_b = np.c_[np.zeros(60), 0.5 * y_b + rng.normal(0, 1, 60)]
    got = two_sample_difference(y_a, logits_a, y_b, logits_b, "multiclass", n_resamples=200, seed=7)
    a = compute_metrics_from_logits(y_a, logits_a, ["n", "p"], "multiclass")
    b = compute_metrics_from_logits(y_b, logits_b, ["n", "p"], "multiclass")
    assert got["auc"]["difference"] == pytest.approx(a["auc"] - b["auc"], abs=1e-12)
    reps = []
    for ia, ib in zip(resample_indices(make_plan(80, y_a), 200, 7), resample_indices(make_plan(60, y_b), 200, 8)):
        reps.append(compute_metrics_from_logits(y_a[ia], logits_a[ia], ["n", "p"], "multiclass")["accuracy"]
                    - compute_metrics_from_logits(y_b[ib], logits_b[ib], ["n", "p"], "multiclass")["accuracy"])
    np.testing.assert_allclose([got["accuracy"]["low"], got["accuracy"]["high"]],
                               np.quantile(reps, [0.025, 0.975]), atol=1e-12)


def test_macro_values_over_the_present_classes_only():
    y = np.array([0, 0, 1, 1, 0, 1])  # class 2 absent
    logits = np.eye(3)[[0, 2, 1, 1, 0, 0]] * 2.0
    all_three = bootstrap_metrics(y, logits, ["a", "b", "c"], "multiclass", n_resamples=50)
    present = bootstrap_metrics(y, logits, ["a", "b", "c"], "multiclass", n_resamples=50, macro_classes=[0, 1])
    assert present["recall"][1] > all_three["recall"][1]  # the absent class's recall of 0 no longer drags it
    assert present["per_class"]["a"] == all_three["per_class"]["a"]  # per class: unchanged


# --- age bins -------------------------------------------------------------------------------------------------
def test_age_bins_hold_their_lower_edge_and_read_nih_ages():
    edges = parse_age_bins("40,60")
    assert age_bin_labels(edges) == ["<40", "40-59", ">=60"]
    ages = ["39", "40", "59", "59.9", "60", "058Y", "", "nan", "n/a", 61, 12.0]
    assert bin_ages(ages, edges).tolist() == ["<40", "40-59", "40-59", "40-59", ">=60", "40-59", "unknown",
                                              "unknown", "unknown", ">=60", "<40"]
    assert age_bin_labels(parse_age_bins("18.5")) == ["<18.5", ">=18.5"]
    assert age_bin_labels(parse_age_bins("30,50,70")) == ["<30", "30-49", "50-69", ">=70"]


@pytest.mark.parametrize("text", ["60,40", "40,40", "forty", "", "40,-1"])
def test_bad_age_bins_are_one_line_naming_the_option(text):
    with pytest.raises(DataError, match=r"^`data_options` age_bins .*: give increasing ages"):
        parse_age_bins(text)
