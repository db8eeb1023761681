"""Test-set predictions of a finished run for the report (intervals, paired tests, ROC curves): the run's
stored predictions_test.npz (labels, logits, image ids, groups), or predicted now with its best weights and
stored there, so the next report needs no model.

probabilities_test.npz (probabilities only) is still written for the ROC plot of runs an experiment trains;
older runs that have only that file are predicted again once, because intervals and DeLong need logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from txkit.stats.scores import probabilities, ranking_scores
from txkit.rundir import load_predictions

PROBABILITIES = "probabilities_test.npz"


def predictions_of_test_split(run_dir: str | Path) -> dict:
    """{"y_true", "logits", "probs", "scores" (ranking scores), "ids", "groups", "classes", "task"} of the
    run's test split, from predictions_test.npz or predicted now (and then stored)."""
    stored = load_predictions(run_dir, "test")
    if stored is None:
        from txkit.run.predict import predict_split
        from txkit.rundir import save_predictions

        predicted = predict_split(run_dir, "test")
        save_predictions(run_dir, "test", predicted["y_true"], predicted["logits"], predicted["ids"],
                         groups=predicted["groups"])
        stored = load_predictions(run_dir, "test")
    return {**stored, "probs": probabilities(stored["logits"], stored["task"]),
            "scores": ranking_scores(stored["logits"], stored["task"])}


def probabilities_of_test_split(run_dir: str | Path) -> dict:
    """{"y_true", "probs", "classes", "task"} of the run's test split, from probabilities_test.npz, or from
    :func:`predictions_of_test_split` (which stores predictions_test.npz) and then kept in that file too."""
    path = Path(run_dir) / PROBABILITIES
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {"y_true": data["y_true"], "probs": data["probs"], "classes": [str(c) for c in data["classes"]],
                    "task": str(data["task"])}
    predicted = predictions_of_test_split(run_dir)
    np.savez(path, y_true=predicted["y_true"], probs=predicted["probs"], classes=np.array(predicted["classes"]),
             task=np.array(predicted["task"]))
    return predicted
