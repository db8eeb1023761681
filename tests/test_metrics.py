"""Metrics agree with scikit-learn computed directly; MURA-style study scoring averages image probabilities."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score

from txkit.run.evaluate import study_metrics
from txkit.training.metrics import compute_metrics, probabilities


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    probs = probabilities(rng.normal(size=(200, 3)) + np.eye(3)[y] * 1.5, "multiclass")
    m = compute_metrics(y, probs, ["a", "b", "c"], "multiclass")
    assert m["f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert m["per_class"]["b"]["auc"] == pytest.approx(roc_auc_score(y == 1, probs[:, 1]))
    assert np.sum(m["confusion_matrix"]) == 200


def test_multilabel_metrics_ignore_unknown_labels():
    y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.2], [0.1, 0.99], [0.7, 0.8], [0.3, 0.1]])
    m = compute_metrics(y, probs, ["x", "y"], "multilabel")
    assert m["per_class"]["x"]["auc"] == 1.0
    assert m["per_class"]["y"]["support"] == 1  # the NaN row is ignored
    assert m["per_class"]["y"]["auc"] == pytest.approx(roc_auc_score([0, 1, 0], [0.2, 0.8, 0.1]))


def test_study_scores_are_mean_image_probabilities():
    studies = np.array(["s1", "s1", "s2", "s3", "s3", "s3"])
    y = np.array([1, 1, 0, 1, 1, 1])
    p1 = np.array([0.9, 0.2, 0.4, 0.3, 0.3, 0.6])
    probs = np.stack([1 - p1, p1], axis=1)
    m = study_metrics(studies, y, probs, ["normal", "abnormal"])
    assert m["n"] == 3
    # study means: s1 0.55 (abnormal), s2 0.4 (normal), s3 0.4 (normal, wrong)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["kappa"] == pytest.approx(cohen_kappa_score([1, 0, 1], [1, 0, 0]))
