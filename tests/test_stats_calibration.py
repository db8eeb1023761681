"""Calibration against known answers and scikit-learn: ECE, reliability bins, Brier score, temperature."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from txkit.stats.calibration import (apply_temperature, brier_score, calibration_summary,
                                     expected_calibration_error, fit_temperature, negative_log_likelihood,
                                     plot_reliability, reliability_curve)
from txkit.stats.scores import probabilities


def calibrated_multiclass(seed=0, n=20000, c=3):
    """Labels drawn from the predicted distribution itself: calibrated, top label included."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(c), n)
    y = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return y, probs


def test_calibrated_probabilities_have_ece_near_zero():
    """Per bin E|acc - conf| <= sqrt(Var) <= 1 / (2 sqrt(n_b)), so E[ECE] <= sum_b (n_b/N) / (2 sqrt(n_b))
    <= sqrt(B / N) / 2 by Cauchy–Schwarz: 0.0137 for B = 15, N = 20000."""
    bound = 0.5 * np.sqrt(15 / 20000)
    y, probs = calibrated_multiclass()
    ece = expected_calibration_error(y, probs)
    assert ece < bound
    sharpened = probs ** 3 / (probs ** 3).sum(axis=1, keepdims=True)  # over-confident
    assert expected_calibration_error(y, sharpened) > 5 * bound
    rng = np.random.default_rng(1)
    p = rng.random((20000, 1))
    assert expected_calibration_error((rng.random((20000, 1)) < p).astype(float), p) < bound


def test_full_confidence_at_seventy_percent_accuracy_is_ece_point_three():
    y = np.array([0] * 7 + [1] * 3)
    probs = np.tile([1.0, 0.0], (10, 1))
    assert expected_calibration_error(y, probs) == pytest.approx(0.3, abs=1e-12)


def test_two_bins_by_hand_and_the_edge_goes_to_the_lower_bin():
    # top-label confidences 0.4, 0.5, 0.75, 0.95; right, wrong, right, wrong
    probs = np.array([[0.4, 0.3, 0.3], [0.5, 0.25, 0.25], [0.75, 0.2, 0.05], [0.95, 0.03, 0.02]])
    y = np.array([0, 1, 0, 2])
    # bins [0, 0.5] and (0.5, 1]: |0.5 - 0.45| / 2 + |0.5 - 0.85| / 2 = 0.2 (0.45 if 0.5 went up)
    assert expected_calibration_error(y, probs, n_bins=2) == pytest.approx(0.2, abs=1e-12)
    # one label: p = .1 .3 .5 | .7 .9 1.0, y = 0 1 0 | 1 1 1: |1/3 - .3| / 2 + |1 - 2.6/3| / 2 = 1/12
    p = np.array([[0.1], [0.3], [0.5], [0.7], [0.9], [1.0]])
    t = np.array([[0], [1], [0], [1], [1], [1]], dtype=float)
    assert expected_calibration_error(t, p, n_bins=2) == pytest.approx(1 / 12, abs=1e-12)


def test_reliability_bins_equal_sklearn_calibration_curve():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 500)
    probs = probabilities(rng.normal(0, 2, (500, 4)) + np.eye(4)[y], "multiclass")
    curve = reliability_curve(y, probs)
    used = curve["count"] > 0
    true, pred = calibration_curve(probs.argmax(1) == y, probs.max(1), n_bins=15)
    assert np.allclose(curve["accuracy"][used], true) and np.allclose(curve["confidence"][used], pred)
    ece = np.sum(curve["count"][used] / 500 * np.abs(true - pred))
    assert expected_calibration_error(y, probs) == pytest.approx(ece, abs=1e-12)
    assert curve["count"].sum() == 500 and len(curve["edges"]) == 16


def test_multilabel_ece_is_the_mean_over_labels_of_known_cases():
    rng = np.random.default_rng(3)
    p = rng.random((400, 2))
    y = (rng.random((400, 2)) < p ** 0.5).astype(float)
    y[rng.random((400, 2)) < 0.3] = np.nan
    per_label = []
    for k in range(2):
        known = ~np.isnan(y[:, k])
        true, pred = calibration_curve(y[known, k], p[known, k], n_bins=15)
        counts = np.bincount(np.searchsorted(np.linspace(0, 1, 16)[1:-1], p[known, k]), minlength=15)
        per_label.append(np.sum(counts[counts > 0] / known.sum() * np.abs(true - pred)))
    assert expected_calibration_error(y, p) == pytest.approx(np.mean(per_label), abs=1e-12)


def test_brier_score_against_sklearn():
    rng = np.random.default_rng(4)
    p1 = rng.random(300)
    y = (rng.random(300) < p1).astype(int)
    ref = brier_score_loss(y, p1)
    assert brier_score(y[:, None].astype(float), p1[:, None]) == pytest.approx(ref, abs=1e-12)
    # two-class multiclass form sums over both classes: twice the binary score
    assert brier_score(y, np.stack([1 - p1, p1], axis=1)) == pytest.approx(2 * ref, abs=1e-12)
    yl = np.stack([y, 1 - y], axis=1).astype(float)
    yl[:10, 1] = np.nan
    both = np.mean([brier_score_loss(y, p1), brier_score_loss(1 - y[10:], p1[10:])])
    assert brier_score(yl, np.stack([p1, p1], axis=1)) == pytest.approx(both, abs=1e-12)
    assert brier_score(np.array([0, 2]), np.array([[1.0, 0, 0], [0.5, 0, 0.5]])) == pytest.approx(0.25)


def test_temperature_scaling_recovers_the_overconfidence():
    rng = np.random.default_rng(5)
    z = rng.normal(0, 1.5, (5000, 3))
    y = (rng.random(5000)[:, None] > np.cumsum(probabilities(z, "multiclass"), axis=1)).sum(axis=1)
    hot = 5.0 * z  # calibrated logits made over-confident
    t = fit_temperature(hot, y, "multiclass")
    assert t == pytest.approx(5.0, rel=0.1)
    assert negative_log_likelihood(apply_temperature(hot, t), y, "multiclass") < \
        negative_log_likelihood(hot, y, "multiclass")
    assert negative_log_likelihood(hot, y, "multiclass") == pytest.approx(
        log_loss(y, probabilities(hot, "multiclass"), labels=[0, 1, 2]), rel=1e-6)
    assert np.array_equal(apply_temperature(z, 1.0), z)
    before = calibration_summary(y, hot, "multiclass")
    after = calibration_summary(y, hot, "multiclass", temperature=t)
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"] and after["temperature"] == t


def test_temperature_scaling_multilabel_with_unknown_labels():
    rng = np.random.default_rng(6)
    z = rng.normal(0, 2, (4000, 2))
    y = (rng.random((4000, 2)) < probabilities(z, "multilabel")).astype(float)
    y[rng.random((4000, 2)) < 0.2] = np.nan
    assert fit_temperature(z / 3.0, y, "multilabel") == pytest.approx(1 / 3.0, rel=0.1)  # under-confident


def test_plot_reliability_writes_a_png(tmp_path):
    y, probs = calibrated_multiclass(n=300)
    path = tmp_path / "reliability.png"
    plot_reliability(y, probs, path, "test split")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    yl = (np.random.default_rng(0).random((300, 2)) < 0.5).astype(float)
    plot_reliability(yl, probs[:, :2], tmp_path / "ml.png", "labels", classes=["x", "z"])
    assert (tmp_path / "ml.png").stat().st_size > 1000
