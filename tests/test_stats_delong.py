"""DeLong's AUC variance and two-model test against independent references:

* a slow O(m n) implementation written here straight from DeLong, DeLong & Clarke-Pearson (1988), section 2:
  psi(x, y) = 1, 1/2, 0; placement values V10(X_i) = mean_j psi(X_i, Y_j), V01(Y_j) = mean_i psi(X_i, Y_j);
  S10 = sum_i (V10_i - A)(V10_i - A)' / (m - 1), S01 likewise, S = S10/m + S01/n;
* the Mann–Whitney U of scipy.stats.mannwhitneyu (AUC = U / mn);
* the published Hanley & McNeil (Radiology 143:29–36, 1982, Table 1) CT rating data of 109 patients
  (58 normal: ratings 1–5 counted 33, 6, 6, 11, 2; 51 abnormal: 3, 2, 2, 11, 33), AUC 0.893, SE 0.032 by
  their exponential approximation (a different estimator, so only near DeLong's);
* a 5000-resample bootstrap of the AUC computed here with scipy.stats.rankdata (variances agree ~10%);
* coverage over 200 simulated binormal data sets with known AUC = Phi(d / sqrt 2).
"""

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm, rankdata

from txkit.stats.delong import delong_auc_ci, delong_compare, delong_covariance, delong_per_class, delong_test


def slow_delong(truth, *models):
    """AUCs and covariance matrix from the paper's definitions, pair by pair."""
    truth = np.asarray(truth).astype(bool)
    v10s, v01s, aucs = [], [], []
    for s in models:
        x, y = s[truth], s[~truth]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    v10, v01, a = np.array(v10s), np.array(v01s), np.array(aucs)
    m, n = v10.shape[1], v01.shape[1]
    s10 = (v10 - a[:, None]) @ (v10 - a[:, None]).T / (m - 1)
    s01 = (v01 - a[:, None]) @ (v01 - a[:, None]).T / (n - 1)
    return a, s10 / m + s01 / n


def binormal(rng, m, n, d):
    y = np.r_[np.ones(m), np.zeros(n)]
    return y, rng.normal(size=m + n) + d * y


def test_matches_the_slow_reference_and_mann_whitney_with_ties():
    rng = np.random.default_rng(0)
    y, s = binormal(rng, 40, 55, 0.8)
    s = np.round(s, 1)  # ties
    auc, low, high, var = delong_auc_ci(y, s)
    ref_auc, ref_cov = slow_delong(y, s)
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert auc == pytest.approx(ref_auc[0], abs=1e-12) == pytest.approx(u / (40 * 55), abs=1e-12)
    assert var == pytest.approx(ref_cov[0, 0], rel=1e-10)
    half = norm.ppf(0.975) * np.sqrt(var)
    assert (low, high) == pytest.approx((auc - half, auc + half), abs=1e-12)


def test_hanley_mcneil_ct_ratings():
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.zeros(58), np.ones(51)]
    s = np.r_[normal, abnormal].astype(float)
    auc, low, high, var = delong_auc_ci(y, s)
    assert round(auc, 3) == 0.893  # published
    assert var == pytest.approx(slow_delong(y, s)[1][0, 0], rel=1e-10)
    assert np.sqrt(var) == pytest.approx(0.032, rel=0.1)  # Hanley–McNeil's SE, another estimator
    assert low < auc < high == pytest.approx(auc + norm.ppf(0.975) * np.sqrt(var), abs=1e-12)


def test_variance_agrees_with_a_large_bootstrap():
    rng = np.random.default_rng(1)
    m = n = 300
    y, s = binormal(rng, m, n, 1.0)
    _, _, _, var = delong_auc_ci(y, s)
    pos, neg = s[y == 1], s[y == 0]
    boot = rng.integers(0, m, (5000, m)), rng.integers(0, n, (5000, n))  # stratified, as DeLong conditions
    resampled = np.concatenate([pos[boot[0]], neg[boot[1]]], axis=1)
    ranks = rankdata(resampled, axis=1)
    aucs = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    ratio = var / aucs.var(ddof=1)
    print(f"DeLong / bootstrap variance ratio {ratio:.3f}")
    assert 0.88 < ratio < 1.12


def test_interval_covers_the_true_auc():
    """Binormal N(0,1) vs N(d,1): true AUC = Phi(d / sqrt 2); 200 data sets of 60 + 60 cases."""
    rng = np.random.default_rng(7)
    d = 1.0
    truth = norm.cdf(d / np.sqrt(2))
    hits = 0
    for _ in range(200):
        y, s = binormal(rng, 60, 60, d)
        _, low, high, _ = delong_auc_ci(y, s)
        hits += low <= truth <= high
    coverage = hits / 200
    print(f"DeLong coverage {coverage:.3f}")
    assert 0.91 <= coverage <= 0.99


def test_two_model_test_matches_the_slow_reference():
    rng = np.random.default_rng(2)
    y, a = binormal(rng, 70, 90, 1.0)
    b = 0.6 * a + rng.normal(0, 0.8, a.shape)  # correlated with a, weaker
    b = np.round(b, 1)
    out = delong_test(y, a, b)
    aucs, cov = slow_delong(y, a, b)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[0] - aucs[1]) / np.sqrt(var)
    assert out["auc_a"] == pytest.approx(aucs[0], abs=1e-12) and out["auc_b"] == pytest.approx(aucs[1], abs=1e-12)
    assert out["variance"] == pytest.approx(var, rel=1e-10)
    assert out["z"] == pytest.approx(z, rel=1e-10)
    assert out["p_value"] == pytest.approx(2 * norm.sf(abs(z)), rel=1e-8)
    got_auc, got_cov = delong_covariance(y, a, b)
    assert np.allclose(got_cov, cov, rtol=1e-10, atol=1e-15)


def test_identical_models_give_p_one():
    rng = np.random.default_rng(3)
    y, a = binormal(rng, 30, 30, 1.0)
    out = delong_test(y, a, a.copy())
    assert out["difference"] == 0 and out["z"] == 0 and out["p_value"] == 1.0
    monotone = delong_test(y, a, np.exp(a))  # the same ranking
    assert monotone["p_value"] == 1.0


def test_false_null_is_rejected_and_true_null_rarely():
    rng = np.random.default_rng(4)
    rejections = 0
    for _ in range(100):  # two independent-noise models of equal strength
        y = np.r_[np.ones(50), np.zeros(50)]
        signal = 1.0 * y
        a, b = signal + rng.normal(size=100), signal + rng.normal(size=100)
        rejections += delong_test(y, a, b)["p_value"] < 0.05
    assert rejections <= 12  # nominal 5; binomial(100, 0.05) exceeds 12 with probability < 0.001
    y, a = binormal(rng, 200, 200, 1.5)
    assert delong_test(y, a, a + rng.normal(0, 3, a.shape))["p_value"] < 1e-4


def test_multiclass_per_class_equals_binary_delong_and_macro_matches_bootstrap():
    rng = np.random.default_rng(5)
    n, c = 600, 3
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + np.array([1.0, 0.6, 0.3])[y][:, None] * np.eye(c)[y]
    out = delong_per_class(y, logits, ["a", "b", "c"], "multiclass")
    from txkit.stats.scores import ranking_scores

    rank = ranking_scores(logits, "multiclass")
    for k, name in enumerate("abc"):
        auc, low, high, var = delong_auc_ci(y == k, rank[:, k])
        assert out["per_class"][name]["auc"] == pytest.approx(auc, abs=1e-12)
        assert out["per_class"][name]["variance"] == pytest.approx(var, rel=1e-10)
    assert out["auc"] == pytest.approx(np.mean([out["per_class"][k]["auc"] for k in "abc"]), abs=1e-12)
    # the macro AUC's variance against a case bootstrap (cases drawn i.i.d., the model behind the covariance)
    idx = rng.integers(0, n, (3000, n))
    macro = np.zeros(3000)
    for k in range(c):
        truth, score = (y[idx] == k), rank[idx, k]
        r = rankdata(score, axis=1)
        m_k = truth.sum(axis=1)
        macro += ((r * truth).sum(axis=1) - m_k * (m_k + 1) / 2) / (m_k * (n - m_k)) / c
    ratio = out["variance"] / macro.var(ddof=1)
    print(f"macro DeLong / bootstrap variance ratio {ratio:.3f}")
    assert 0.85 < ratio < 1.15
    # the macro variance is not the naive sum of independent per-class variances
    naive = sum(out["per_class"][k]["variance"] for k in "abc") / 9
    assert out["variance"] != pytest.approx(naive, rel=0.01)


def test_binary_macro_is_the_single_auc():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 200)
    logits = np.stack([np.zeros(200), rng.normal(size=200) + y], axis=1)
    out = delong_per_class(y, logits, ["neg", "pos"], "multiclass")
    auc, low, high, var = delong_auc_ci(y, logits[:, 1] - logits[:, 0])
    assert out["auc"] == pytest.approx(auc) and out["variance"] == pytest.approx(var, rel=1e-9)
    assert out["per_class"]["neg"]["variance"] == pytest.approx(var, rel=1e-9)


def test_multilabel_ignores_unknown_labels():
    rng = np.random.default_rng(8)
    y = (rng.random((150, 2)) < 0.4).astype(float)
    logits = rng.normal(size=(150, 2)) + y
    y[rng.random((150, 2)) < 0.2] = np.nan
    out = delong_per_class(y, logits, ["x", "z"], "multilabel")
    for k, name in enumerate("xz"):
        known = ~np.isnan(y[:, k])
        auc, _, _, var = delong_auc_ci(y[known, k], logits[known, k])
        assert out["per_class"][name]["auc"] == pytest.approx(auc, abs=1e-12)
        assert out["per_class"][name]["variance"] == pytest.approx(var, rel=1e-10)
        assert out["per_class"][name]["n_positive"] + out["per_class"][name]["n_negative"] == known.sum()


def test_compare_per_class_matches_binary_test():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 3, 300)
    a = rng.normal(size=(300, 3)) + np.eye(3)[y]
    b = a + rng.normal(0, 1.0, a.shape)
    out = delong_compare(y, a, b, ["p", "q", "r"], "multiclass")
    from txkit.stats.scores import ranking_scores

    ra, rb = ranking_scores(a, "multiclass"), ranking_scores(b, "multiclass")
    for k, name in enumerate("pqr"):
        ref = delong_test(y == k, ra[:, k], rb[:, k])
        for key in ("difference", "variance", "z", "p_value"):
            assert out["per_class"][name][key] == pytest.approx(ref[key], rel=1e-9, abs=1e-14), (name, key)
    assert out["difference"] == pytest.approx(out["auc_a"] - out["auc_b"])
    same = delong_compare(y, a, a.copy(), ["p", "q", "r"], "multiclass")
    assert same["p_value"] == 1.0


def test_needs_both_classes():
    with pytest.raises(ValueError, match="positive and negative"):
        delong_auc_ci(np.ones(5), np.arange(5.0))
