"""`txkit experiment report`: stored predictions reused, DeLong and paired-bootstrap comparisons, and the
verdict in words.

Trained numbers differ between machines, so only properties that hold for any model are asserted: bounds
in order, values in range, keys present."""

import io
import json
import shutil
import textwrap
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from rich.console import Console

from txkit.cli.main import build_cli
from txkit.experiments import markdown
from txkit.experiments.report import build_report, judge
from txkit.experiments.runner import run_experiment
from txkit.run import predict

def invoke(*args):
    """The txkit command in this process, with a subprocess-like result for assert_one_line_error."""
    result = CliRunner().invoke(build_cli(), [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


# ------------------------------------------------------------------------------------- experiment report

EXPERIMENT = """
[experiment]
name = "evidence"

[defaults]
backbone = "resnet18"
weights = "none"
image_size = 32
epochs = 1
batch_size = 16
device = "cpu"

[target]
dataset = "synthetic-dld"
data_options = { per_class = 6, size = 32 }

[grid]
strategies = ["full", "last-layer"]
seeds = [0, 1]

[report]
compare = [["full", "last-layer"]]
"""


@pytest.fixture(scope="module")
def experiment(module_tmp):
    folder = module_tmp("experiment")
    path = folder / "evidence.toml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    root, counts = run_experiment(path, folder / "exp", console=Console(file=io.StringIO()))
    assert counts == {"done": 4}
    return root


def test_report_uses_stored_predictions_and_predicts_missing_ones(experiment, monkeypatch):
    stored = sorted(experiment.glob("runs/*/predictions_test.npz"))
    assert len(stored) == 4  # kept by the runs for the ROC plot
    stored[0].unlink()
    calls = []
    original = predict.predict_split
    monkeypatch.setattr(predict, "predict_split", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    build_report(experiment)
    assert len(calls) == 1 and stored[0].exists()
    calls.clear()
    build_report(experiment)
    assert calls == []


def test_report_shows_intervals_delong_and_the_verdict_in_words(experiment):
    result = CliRunner().invoke(build_cli(), ["experiment", "report", str(experiment), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for cell in report["cells"]:
        assert cell["ci_seed"] == 0 and "bootstrap" in cell["ci_method"]
        for metric in ("accuracy", "auc"):
            assert cell[f"ci_{metric}_low"] <= cell[f"ci_{metric}_high"]
        assert cell["ci_auc_delong_low"] <= cell["ci_auc"] <= cell["ci_auc_delong_high"]
    [pair] = report["paired"]
    assert (pair["a"], pair["b"], pair["level"]) == ("full", "last-layer", 0.95)
    assert [s["seed"] for s in pair["seeds"]] == [0, 1]
    for seed in pair["seeds"]:
        assert 0 <= seed["delong_p"] <= 1 and seed["n"] == 42
        for metric in ("auc", "accuracy"):
            assert seed[f"{metric}_difference_low"] <= seed[f"{metric}_difference_high"]
    verdicts = {"indistinguishable", "a higher", "b higher", "inconsistent"}
    assert pair["verdict"] in verdicts and pair["accuracy_verdict"] in verdicts
    assert {k: pair[k] for k in ("verdict", "accuracy_verdict")} == judge(pair["seeds"], 0.95)

    text = (experiment / "report" / "results.md").read_text()
    assert "## Test metrics with 95 % confidence intervals (first seed of each cell)" in text
    assert "## Paired tests on the test images" in text and "DeLong p" in text
    assert f"- {pair['sentence']}" in text and "seed 0: DeLong p = " in pair["sentence"]
    assert pair["sentence"].startswith("full ") and "last-layer" in pair["sentence"]
    assert "| full | 1 | 0 | " in text  # the interval table: strategy, fraction, seed
    paired_csv = (experiment / "report" / "paired.csv").read_text().splitlines()
    assert len(paired_csv) == 1 + 2 and "delong_p" in paired_csv[0]


def test_report_of_a_run_without_predictions_or_weights_says_so(experiment, tmp_path):
    root = shutil.copytree(experiment, tmp_path / "exp")
    run = sorted(root.glob("runs/*/predictions_test.npz"))[0].parent
    (run / "predictions_test.npz").unlink()
    (run / "model.safetensors").unlink()
    report = build_report(root)
    [missing] = report["no_predictions"]
    assert "model.safetensors: not found" in missing["error"]
    [pair] = report["paired"]
    assert sum("error" in s for s in pair["seeds"]) == 1 and "not tested" in pair["sentence"]
    assert f"no test predictions of `{missing['run']}`" in (root / "report" / "results.md").read_text()


def seed_test(seed, p, difference, accuracy=(0.025, -0.05, 0.1)):
    return {"seed": seed, "n": 40, "auc_a": 0.8, "auc_b": 0.8 - difference, "delong_difference": difference,
            "delong_p": p, "auc_difference": difference, "auc_difference_low": difference - 0.04,
            "auc_difference_high": difference + 0.04, "auc_bootstrap_p": p, "accuracy_difference": accuracy[0],
            "accuracy_difference_low": accuracy[1], "accuracy_difference_high": accuracy[2],
            "accuracy_bootstrap_p": 0.5}


@pytest.mark.parametrize("seeds, expected, words", [
    ([seed_test(0, 0.41, -0.012)], ("indistinguishable", "indistinguishable"),
     "full and scratch cannot be told apart at the 95 % level (seed 0: DeLong p = 0.41, difference in AUC "
     "-0.012 [-0.052, +0.028], in accuracy +0.025 [-0.050, +0.100])."),
    ([seed_test(0, 0.41, 0.01, (0.1, 0.02, 0.2)), seed_test(1, 0.5, 0.0, (0.1, 0.03, 0.2))],
     ("indistinguishable", "a higher"),
     "full and scratch cannot be told apart in AUC at the 95 % level; in accuracy full is higher on every seed "
     "(seed 0: "),
    ([seed_test(0, 0.001, 0.1), seed_test(1, 0.01, 0.08)], ("a higher", "indistinguishable"),
     "full has a higher AUC than scratch at the 95 % level on every seed; in accuracy they cannot be told apart "
     "(seed 0: DeLong p = 0.001"),
    ([seed_test(0, 0.001, -0.1), seed_test(1, 0.3, 0.01)], ("inconsistent", "indistinguishable"),
     "full and scratch differ in AUC at the 95 % level on seed 0 but not on seed 1, so the runs do not tell "
     "them apart consistently"),
    ([{"seed": 0, "error": "no test predictions of x: gone"}], ("untested", "untested"),
     "full and scratch have no paired test: no test predictions of x: gone."),
])
def test_verdict_in_plain_words(seeds, expected, words):
    test = {"strategy_a": "full", "strategy_b": "scratch", "colorizer_a": "none", "colorizer_b": "none",
            "backbone_a": "resnet18", "backbone_b": "resnet18", "fraction": 1.0, "level": 0.95, "seeds": seeds,
            **judge(seeds, 0.95)}
    assert (test["verdict"], test["accuracy_verdict"]) == expected
    assert markdown.comparison_sentence(test, ["strategy"]).startswith(words)
