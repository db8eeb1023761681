"""The real-data experiment of examples/experiments/pneumoniamnist_ci.toml, run end to end and its report
checked for sanity: every cell present with all its seeds, no NaN, Wilcoxon tests and slopes computed.

The whole file (3,882 training images) took 19 minutes with --jobs 2 on this project's two-core
machine, too long for CI, so the test runs the same experiment file on a stratified, seeded subset of the
same real file (440 train / 100 val / 160 test images, class proportions kept) through
`--set target.data_root=SUBSET`.

No assertion depends on a trained value, since those differ between CPUs (floating-point kernels differ):
the test checks that every run finished, that every mean and std is finite, that accuracy and AUC lie in
[0, 1], that every slope was fitted and that each Wilcoxon p lies in (0, 1], which holds for any finite
results, whichever strategy wins.
"""

import io
import math

import numpy as np
import pytest
from rich.console import Console
from sklearn.model_selection import train_test_split

from helpers import PNEUMONIAMNIST, ROOT

from txkit.experiments.report import build_report
from txkit.experiments.runner import run_experiment

EXPERIMENT = ROOT / "examples" / "experiments" / "pneumoniamnist_ci.toml"
SUBSET_SIZES = {"train": 440, "val": 100, "test": 160}
STRATEGIES = ["scratch", "last-layer", "full", "colorizer"]
FRACTIONS = [0.05, 0.2, 1.0]


def stratified_subset(source, target):
    arrays = {}
    with np.load(source) as data:
        for split, size in SUBSET_SIZES.items():
            labels = data[f"{split}_labels"]
            keep, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=labels.ravel(),
                                       random_state=0)
            keep = np.sort(keep)
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = data[f"{split}_images"][keep], labels[keep]
    np.savez(target, **arrays)


def finite(value):
    return isinstance(value, float) and math.isfinite(value)


@pytest.mark.slow
def test_pneumoniamnist_experiment_and_report(tmp_path):
    subset = tmp_path / "pneumoniamnist_subset.npz"
    stratified_subset(PNEUMONIAMNIST, subset)
    assert 'data_root = "../../../shared/data/pneumoniamnist.npz"' in EXPERIMENT.read_text()

    root, counts = run_experiment(EXPERIMENT, tmp_path / "exp", jobs=2, console=Console(file=io.StringIO()),
                                  overrides={"target.data_root": str(subset)})
    assert counts == {"done": 36}
    report = build_report(root)

    cells = {(row["strategy"], row["fraction"]): row for row in report["cells"]}
    assert set(cells) == {(s, r) for s in STRATEGIES for r in FRACTIONS}
    for row in cells.values():
        assert row["runs"] == 3 and row["failed"] == 0 and row["seeds"] == [0, 1, 2]
        assert all(finite(value) for key, value in row.items() if key.endswith(("_mean", "_std"))), row
        assert 0 <= row["test_accuracy_mean"] <= 1 and 0 <= row["test_auc_mean"] <= 1
    assert cells[("colorizer", 1.0)]["colorizer"] == "conv1x1"

    for strategy in STRATEGIES:
        fitted = {s["metric"]: s for s in report["slopes"] if s["strategy"] == strategy}
        assert {"test_accuracy", "test_f1", "test_auc", "plateau_accuracy", "plateau_loss"} <= set(fitted)
        assert all(finite(s["A"]) and finite(s["b"]) and s["n"] == 9 for s in fitted.values())

    compared = {(t["a"], t["b"], t["fraction"]) for t in report["wilcoxon"]}
    assert compared == {(a, b, r) for a, b in [("full", "scratch"), ("full", "last-layer"),
                                                ("colorizer", "last-layer")] for r in FRACTIONS}
    assert all(t["n"] == 3 and 0 < t["p"] <= 1 for t in report["wilcoxon"])
    written = {p.name for p in (root / "report").iterdir()}
    assert {"results.md", "results.csv", "wilcoxon.csv", "slopes.csv", "metric_vs_fraction.png", "roc_r1.png",
            "learning_curves_r1.png"} <= written
