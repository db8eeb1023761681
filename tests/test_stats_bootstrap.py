"""Bootstrap intervals: the vectorised metrics equal txkit.training.metrics (scikit-learn) on the data as they
are; resamples are seeded, keep class counts, take whole groups; intervals cover a known true value."""

import time

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import accuracy_score, f1_score

from txkit.stats.bootstrap import bootstrap_ci, bootstrap_metrics, paired_bootstrap_difference, point_metrics
from txkit.stats.resampling import make_plan, resample_indices, resample_weights
from txkit.training.metrics import compute_metrics_from_logits


def multiclass_data(seed=0, n=300, c=3, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.2 * np.eye(c)[y]
    return y, (np.round(logits, 1) if ties else logits)


def multilabel_data(seed=0, n=300, c=3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.35).astype(float)
    logits = rng.normal(size=(n, c)) + 1.5 * y - 0.5
    y[rng.random((n, c)) < 0.15] = np.nan  # unknown labels
    return y, logits


def accuracy(y, logits):
    return float(accuracy_score(y, logits.argmax(axis=1)))


def assert_same_metrics(point, reference, classes):
    for m in ("accuracy", "precision", "recall", "f1", "auc"):
        assert point[m] == pytest.approx(reference[m], abs=1e-12), m
    for k, c in enumerate(classes):
        for m in ("precision", "recall", "f1", "auc"):
            assert point["per_class"][m][k] == pytest.approx(reference["per_class"][c][m], abs=1e-12), (c, m)


@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_multiclass_metrics_equal_sklearn_definitions(ties):
    y, logits = multiclass_data(ties=ties)
    classes = ["a", "b", "c"]
    assert_same_metrics(point_metrics(y, logits, "multiclass"),
                        compute_metrics_from_logits(y, logits, classes, "multiclass"), classes)


def test_vectorised_multilabel_metrics_equal_sklearn_definitions():
    y, logits = multilabel_data()
    classes = ["x", "y", "z"]
    assert_same_metrics(point_metrics(y, logits, "multilabel"),
                        compute_metrics_from_logits(y, logits, classes, "multilabel"), classes)


def test_weighted_resample_equals_metrics_of_the_resampled_cases():
    y, logits = multiclass_data(1, n=120, ties=True)
    plan = make_plan(len(y), y)
    idx = next(resample_indices(plan, 1, seed=5))
    w = next(resample_weights(plan, 1, seed=5))[0]
    assert np.array_equal(np.bincount(idx, minlength=len(y)), w)
    from txkit.stats.weighted import MetricEngine

    got = MetricEngine(y, logits, "multiclass")(w[None])
    ref = compute_metrics_from_logits(y[idx], logits[idx], ["a", "b", "c"], "multiclass")
    assert got["f1"][0] == pytest.approx(ref["f1"], abs=1e-12)
    assert got["auc"][0] == pytest.approx(ref["auc"], abs=1e-12)


def test_indices_and_weights_describe_the_same_resamples():
    groups = np.repeat(np.arange(30), 3)
    y = np.repeat(np.arange(30) % 2, 3)
    for plan in (make_plan(90, y), make_plan(90, y, groups), make_plan(90)):
        idx = list(resample_indices(plan, 300, seed=2))  # crosses the generator's block of 256
        weights = np.concatenate(list(resample_weights(plan, 300, seed=2, chunk=64)))
        assert np.array_equal(np.stack([np.bincount(i, minlength=90) for i in idx]), weights)


def test_seed_determines_the_resamples():
    y, logits = multiclass_data()
    a = bootstrap_metrics(y, logits, ["a", "b", "c"], "multiclass", n_resamples=200, seed=3)
    b = bootstrap_metrics(y, logits, ["a", "b", "c"], "multiclass", n_resamples=200, seed=3)
    c = bootstrap_metrics(y, logits, ["a", "b", "c"], "multiclass", n_resamples=200, seed=4)
    assert a == b and a["auc"] != c["auc"]
    assert bootstrap_ci(accuracy, y, logits, n_resamples=100, seed=3) == \
        bootstrap_ci(accuracy, y, logits, n_resamples=100, seed=3)


def test_batching_does_not_change_the_resamples():
    y, _ = multiclass_data(n=50)
    plan = make_plan(len(y), y)
    one = np.concatenate(list(resample_weights(plan, 30, seed=1, chunk=7)))
    other = np.concatenate(list(resample_weights(plan, 30, seed=1)))
    assert np.array_equal(one, other)


def test_stratified_resamples_keep_every_class_count():
    y, logits = multiclass_data(n=101)
    counts = []

    def record(yy, ss):
        counts.append(np.bincount(yy, minlength=3))
        return accuracy(yy, ss)

    out = bootstrap_ci(record, y, logits, n_resamples=50)
    assert out["method"] == "stratified percentile bootstrap"
    assert all(np.array_equal(c, np.bincount(y, minlength=3)) for c in counts[:-1])  # last: the estimate
    assert len(counts) == 51


def test_cluster_resamples_hold_whole_groups():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, 40)
    groups = np.repeat(np.arange(40), sizes)
    group_label = rng.integers(0, 2, 40)
    y = group_label[groups]
    logits = rng.normal(size=(len(y), 2))
    seen = []

    def record(yy, ss):
        seen.append(ss[:, 0].copy())
        return accuracy(yy, ss)

    out = bootstrap_ci(record, y, logits, n_resamples=40, groups=groups)
    assert out["method"] == "cluster bootstrap over groups" and out["n_groups"] == 40
    image_of = {v: i for i, v in enumerate(logits[:, 0])}  # the values identify the images
    for values in seen[:-1]:
        idx = np.array([image_of[v] for v in values])
        times = np.bincount(idx, minlength=len(y))
        for g in range(40):  # every image of a group occurs as often as the group was drawn
            assert len(set(times[groups == g])) == 1
        drawn = np.array([times[groups == g][0] for g in range(40)])
        for label in (0, 1):  # groups are stratified by their label
            assert drawn[group_label == label].sum() == (group_label == label).sum()


def test_groups_with_mixed_labels_form_their_own_stratum():
    groups = np.array([0, 0, 1, 1, 2, 3])
    y = np.array([0, 1, 1, 1, 0, 0])
    plan = make_plan(len(y), y, groups)
    strata = sorted(sorted(s.tolist()) for s in plan.strata)
    assert strata == [[0], [1], [2, 3]]


def test_bootstrap_metrics_reports_valid_resamples_and_skips_undefined_auc():
    rng = np.random.default_rng(0)
    y = np.full((60, 1), 0.0)
    y[:2, 0] = 1.0  # two positives: many resamples have none, so no AUC
    logits = rng.normal(size=(60, 1)) + y
    out = bootstrap_metrics(y, logits, ["x"], "multilabel", n_resamples=300)
    valid = out["n_valid"]["per_class"]["x"]["auc"]
    assert out["method"] == "percentile bootstrap" and out["n_resamples"] == 300
    assert 200 < valid < 300  # P(no positive drawn) = (58/60)^60 ≈ 0.13
    assert out["n_valid"]["accuracy"] == 300


def test_bootstrap_metrics_is_fast():
    y, logits = multiclass_data(n=600, c=2)
    bootstrap_metrics(y, logits, ["a", "b"], "multiclass", n_resamples=10)  # imports
    start = time.perf_counter()
    out = bootstrap_metrics(y, logits, ["a", "b"], "multiclass", n_resamples=1000)
    assert time.perf_counter() - start < 5.0
    assert out["per_class"]["a"]["auc"] == pytest.approx(out["per_class"]["b"]["auc"], abs=1e-12)


def test_bootstrap_interval_of_accuracy_covers_the_true_accuracy():
    """200 simulated test sets, 100 cases per class, binormal scores N(0,1) vs N(d,1) cut at d/2: the true
    accuracy is Phi(d/2). The stratified 95% percentile interval should cover it in about 95% of sets."""
    rng = np.random.default_rng(2024)
    d, n = 1.0, 100
    truth = norm.cdf(d / 2)
    y = np.repeat([0, 1], n)
    hits = 0
    for seed in range(200):
        s = rng.normal(size=2 * n) + d * y - d / 2
        logits = np.stack([np.zeros(2 * n), s], axis=1)
        ci = bootstrap_metrics(y, logits, ["neg", "pos"], "multiclass", n_resamples=500, seed=seed)
        hits += ci["accuracy"][0] <= truth <= ci["accuracy"][1]
    coverage = hits / 200
    print(f"bootstrap accuracy coverage {coverage:.3f}")
    assert 0.91 <= coverage <= 0.99


def test_paired_difference_of_identical_models_is_zero():
    y, logits = multiclass_data()
    out = paired_bootstrap_difference(y, logits, logits.copy(), "auc", n_resamples=200)
    assert out["difference"] == out["low"] == out["high"] == 0.0 and out["p_value"] == 1.0


def test_paired_difference_uses_the_same_resamples_for_both_models():
    y, a = multiclass_data(0)
    b = a + np.random.default_rng(9).normal(0, 1.0, a.shape)
    fast = paired_bootstrap_difference(y, a, b, "f1", n_resamples=100, seed=1)

    def macro_f1(yy, ss):
        return float(f1_score(yy, ss.argmax(axis=1), average="macro", labels=[0, 1, 2], zero_division=0))

    slow = paired_bootstrap_difference(y, a, b, macro_f1, n_resamples=100, seed=1)
    for key in ("difference", "low", "high", "p_value"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key
    assert fast["low"] <= fast["difference"] <= fast["high"]
    # pairing: the interval of the difference is narrower than the two models' own intervals combined
    ia = bootstrap_metrics(y, a, ["a", "b", "c"], "multiclass", n_resamples=100, seed=1)["f1"]
    ib = bootstrap_metrics(y, b, ["a", "b", "c"], "multiclass", n_resamples=100, seed=1)["f1"]
    assert fast["high"] - fast["low"] < (ia[1] - ia[0]) + (ib[1] - ib[0])


def test_paired_difference_per_class_and_with_groups():
    y, a = multiclass_data(3, n=200)
    b = a.copy()
    b[:, 1] += 0.8
    groups = np.arange(200) // 4
    y = np.repeat(y[::4], 4)  # a group's images share its label
    out = paired_bootstrap_difference(y, a, b, "recall", cls=1, n_resamples=200, groups=groups)
    assert out["metric"] == "recall[1]" and out["method"] == "cluster bootstrap over groups"
    assert out["difference"] < 0 and out["high"] <= 0  # b predicts class 1 far more often
