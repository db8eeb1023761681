"""Ranking scores keep the order of the probabilities where softmax saturates (issue 16, item 6).

References: scikit-learn's roc_auc_score on the logit margin (for two classes every one-vs-rest score is a
strictly increasing function of the margin z_1 - z_0, so that AUC is the true one) and scipy's logsumexp.
"""

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp
from sklearn.metrics import roc_auc_score

from txkit.stats.scores import log_probabilities, probabilities, rank_auc, ranking_scores
from txkit.training.metrics import compute_metrics, compute_metrics_from_logits


def saturated_binary(seed=0, n=400):
    """A confident one-epoch model: the logit margin z_1 - z_0 is 50 + 20 y + N(0, 15), so p_1 = 1.0 exactly
    for most cases of both classes while p_0 = exp(-margin) still orders them (as the 0.601 vs 0.500 run)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    margin = 50.0 + 20.0 * y + rng.normal(0, 15, n)
    logits = np.stack([np.zeros(n), margin], axis=1) + rng.normal(0, 5, (n, 1))
    return y, logits, margin


def test_saturated_softmax_ties_and_breaks_the_old_auc():
    y, logits, margin = saturated_binary()
    probs = probabilities(logits, "multiclass")
    assert (probs == 1.0).sum() > 0.5 * len(y)  # the fixture really saturates
    old = compute_metrics(y, probs, ["a", "b"], "multiclass")["per_class"]
    assert abs(old["a"]["auc"] - old["b"]["auc"]) > 0.1  # the bug: two AUCs for one binary split
    assert old["a"]["auc"] == pytest.approx(roc_auc_score(y, margin), abs=1e-12)  # p_0 still ranks
    assert old["b"]["auc"] < old["a"]["auc"]  # p_1 ties at 1.0 and loses the order


def test_auc_from_logits_is_one_number_for_two_classes():
    y, logits, margin = saturated_binary()
    new = compute_metrics_from_logits(y, logits, ["a", "b"], "multiclass")
    truth = roc_auc_score(y, margin)
    # equal up to the last bit of roc_auc_score's trapezoid sums
    assert new["per_class"]["a"]["auc"] == pytest.approx(new["per_class"]["b"]["auc"], abs=1e-12)
    assert new["per_class"]["a"]["auc"] == pytest.approx(truth, abs=1e-12)
    assert new["auc"] == pytest.approx(truth, abs=1e-12)
    # thresholded metrics are those of the probabilities
    old = compute_metrics(y, probabilities(logits, "multiclass"), ["a", "b"], "multiclass")
    assert new["accuracy"] == old["accuracy"] and new["f1"] == old["f1"]


def test_ranking_scores_are_log_odds():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (50, 4))
    lp = log_softmax(z, axis=1)
    expected = lp - np.log(-np.expm1(lp))  # log p - log(1 - p), fine at these moderate logits
    assert np.allclose(ranking_scores(z, "multiclass"), expected, atol=1e-10)
    assert np.array_equal(ranking_scores(z, "multilabel"), z)
    two = rng.normal(0, 50, (30, 2))
    r = ranking_scores(two, "multiclass")
    assert np.array_equal(r[:, 0], -r[:, 1])


def test_log_probabilities_match_scipy_and_keep_saturated_differences():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (40, 3))
    assert np.allclose(log_probabilities(z, "multiclass"), log_softmax(z, axis=1), atol=1e-12)
    assert np.allclose(log_probabilities(z, "multilabel"), -np.logaddexp(0, -z), atol=1e-12)
    top = log_probabilities(np.array([[0.0, 40.0], [0.0, 45.0]]), "multiclass")[:, 1]
    assert top[0] < top[1] < 0  # log softmax of the top class does not round to 0
    assert top[0] == pytest.approx(-np.exp(-40.0), rel=1e-9)


def test_probabilities_sigmoid_is_stable():
    z = np.array([[-1000.0, -3.0, 0.0, 3.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise"):
        p = probabilities(z, "multilabel")
    assert np.allclose(p, 1 / (1 + np.exp(-np.clip(z, -700, 700))))
    assert np.allclose(probabilities(z, "multiclass").sum(), 1.0) and np.allclose(
        np.log(probabilities(z[:, 1:4], "multiclass")), z[:, 1:4] - logsumexp(z[:, 1:4]))


def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    assert rank_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(rank_auc(np.ones(5), np.arange(5)))
