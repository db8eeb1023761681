"""Evidence for a reviewer: confidence intervals, AUC tests and calibration (numpy, scipy, scikit-learn).

Ranking scores (:mod:`txkit.stats.scores`)
    probabilities(logits, task), log_probabilities(logits, task), ranking_scores(logits, task),
    rank_auc(truth, score)
Bootstrap (:mod:`txkit.stats.bootstrap`, :mod:`txkit.stats.resampling`)
    bootstrap_ci(metric_fn, y_true, scores, *, n_resamples=1000, level=0.95, seed=0, strata="auto", groups=None)
    bootstrap_metrics(y_true, scores, classes, task, *, n_resamples=1000, level=0.95, seed=0, strata="auto",
                      groups=None, scores_kind="logits")
    paired_bootstrap_difference(y_true, scores_a, scores_b, metric="auc", *, task="multiclass", cls=None, ...)
    percentile_interval(values, level=0.95), make_plan(n_cases, strata, groups),
    resample_indices(plan, n_resamples, seed), resample_weights(plan, n_resamples, seed)
DeLong (:mod:`txkit.stats.delong`)
    delong_auc_ci(y_true_binary, scores, level=0.95) -> (auc, low, high, variance)
    delong_test(y_true_binary, scores_a, scores_b, level=0.95) -> dict
    delong_covariance(y_true_binary, *scores) -> (aucs, covariance)
    delong_per_class(y_true, scores, classes, task, *, level=0.95, scores_kind="logits") -> dict
    delong_compare(y_true, scores_a, scores_b, classes, task, *, level=0.95, scores_kind="logits") -> dict
Operating points (:mod:`txkit.stats.operating`)
    choose_threshold(positive, scores, rule, target=None), operating_points(y_true, probs, thresholds, classes,
    task), bootstrap_operating_points(y_true, probs, thresholds, classes, task, *, n_resamples=1000, ...)
Subgroups and two test sets (:mod:`txkit.stats.subgroups`)
    subgroup_analysis(y_true, logits, classes, task, values, *, groups=None, thresholds=None, ...),
    two_sample_difference(y_a, logits_a, y_b, logits_b, task, *, metrics=("accuracy", "auc"), ...)
Cross-validation (:mod:`txkit.stats.crossval`)
    corrected_resampled_ttest(differences, n_train, n_test, level=0.95) -> dict (Nadeau-Bengio)
Calibration (:mod:`txkit.stats.calibration`)
    expected_calibration_error(y_true, probs, n_bins=15, task=None), brier_score(y_true, probs, task=None),
    reliability_curve(y_true, probs, n_bins=15, task=None), plot_reliability(y_true, probs, path, title, ...),
    negative_log_likelihood(logits, y_true, task), fit_temperature(logits, y_true, task),
    apply_temperature(logits, temperature), calibration_summary(y_true, logits, task, n_bins=15, temperature=1)

Methods, references and defaults: docs/statistics.md. Nothing here imports torch.
"""

from txkit.stats.bootstrap import bootstrap_ci, bootstrap_metrics, paired_bootstrap_difference, percentile_interval
from txkit.stats.calibration import (apply_temperature, brier_score, calibration_summary,
                                     expected_calibration_error, fit_temperature, negative_log_likelihood,
                                     plot_reliability, reliability_curve)
from txkit.stats.crossval import corrected_resampled_ttest
from txkit.stats.delong import delong_auc_ci, delong_compare, delong_covariance, delong_per_class, delong_test
from txkit.stats.operating import bootstrap_operating_points, choose_threshold, operating_points
from txkit.stats.resampling import make_plan, resample_indices, resample_weights
from txkit.stats.scores import log_probabilities, probabilities, rank_auc, ranking_scores
from txkit.stats.subgroups import subgroup_analysis, two_sample_difference

__all__ = [
    "apply_temperature", "bootstrap_ci", "bootstrap_metrics", "bootstrap_operating_points", "brier_score",
    "calibration_summary", "choose_threshold", "corrected_resampled_ttest",
    "delong_auc_ci", "delong_compare", "delong_covariance", "delong_per_class", "delong_test",
    "expected_calibration_error", "fit_temperature", "log_probabilities", "make_plan", "negative_log_likelihood",
    "operating_points", "paired_bootstrap_difference", "percentile_interval", "plot_reliability", "probabilities",
    "rank_auc", "ranking_scores", "reliability_curve", "resample_indices", "resample_weights",
    "subgroup_analysis", "two_sample_difference",
]
