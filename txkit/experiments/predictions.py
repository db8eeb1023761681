"""Test-set probabilities of a finished run for the report's ROC curves: predicted once with the run's best
weights and kept in the run directory as probabilities_test.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROBABILITIES = "probabilities_test.npz"


def probabilities_of_test_split(run_dir: str | Path) -> dict:
    """{"y_true", "probs", "classes", "task"} of the run's test split, from the file or predicted now."""
    path = Path(run_dir) / PROBABILITIES
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {"y_true": data["y_true"], "probs": data["probs"], "classes": [str(c) for c in data["classes"]],
                    "task": str(data["task"])}
    from txkit.training.evaluation import predict_split

    predicted = predict_split(run_dir, "test")
    np.savez(path, y_true=predicted["y_true"], probs=predicted["probs"], classes=np.array(predicted["classes"]),
             task=np.array(predicted["task"]))
    return predicted
