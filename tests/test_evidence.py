"""Evidence in the commands: intervals, calibration and stored predictions in `txkit evaluate`, `txkit
calibrate`, `txkit predict`, and DeLong / paired-bootstrap comparisons in `txkit experiment report`.

Trained numbers differ between machines, so only properties that hold for any model are asserted: bounds
in order, values in range, keys present."""

import io
import json
import math
import shutil
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from rich.console import Console

from faults import assert_one_line_error

from txkit.cli.main import build_cli
from txkit.errors import TxkitError
from txkit.experiments import markdown
from txkit.experiments.report import build_report, judge
from txkit.experiments.runner import run_experiment
from txkit.config import TrainConfig
from txkit.run import calibrate, evaluate, predict
from txkit.rundir import load_calibration, load_predictions, save_predictions
from txkit.training import session

TINY = dict(dataset="synthetic-dld", data_options={"per_class": "6", "size": "32"}, backbone="resnet18",
            weights="none", image_size=32, epochs=1, batch_size=16, device="cpu")


def invoke(*args):
    """The txkit command in this process, with a subprocess-like result for assert_one_line_error."""
    result = CliRunner().invoke(build_cli(), [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def check_interval(interval, value=None):
    low, high = interval
    assert 0 <= low <= high <= 1, interval
    if value is not None:
        assert low <= value <= high, (value, interval)


@pytest.fixture
def tiny_run(finished_run):
    """The suite's finished one-epoch run (conftest.py), with the test predictions its session stored."""
    return finished_run


@pytest.fixture
def run_copy(finished_run_copy):
    """A copy of the finished run, for tests that add files to it."""
    return finished_run_copy


# --------------------------------------------------------------------------------------------- evaluate

def test_evaluate_json_has_intervals_calibration_and_reliability_diagram(tiny_run):
    result = invoke("evaluate", tiny_run, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"accuracy", "precision", "recall", "f1", "auc", "per_class", "confusion_matrix", "n", "split",
            "classes", "roc_png"} <= set(data)
    ci = data["ci"]
    check_interval(ci["auc"], data["auc"])
    for metric in ("accuracy", "precision", "recall", "f1"):
        check_interval(ci[metric])
    for name, row in ci["per_class"].items():
        assert set(row) == {"precision", "recall", "f1", "auc"} and name in data["per_class"]
        check_interval(row["auc"])
    assert ci["method"] == "stratified percentile bootstrap" and ci["resampled"] == "images"
    assert ci["n_resamples"] == 1000 and ci["level"] == 0.95 and ci["seed"] == 0
    check_interval(ci["delong"]["auc"], data["auc"])
    assert set(ci["delong"]["per_class"]) == set(data["classes"])
    assert 0 <= data["ece"] <= 1 and 0 <= data["brier"] <= 2 and data["nll"] > 0 and data["ece_bins"] == 15
    assert data["reliability_png"].endswith("reliability_test.png")
    assert (tiny_run / "reliability_test.png").stat().st_size > 1000
    assert "calibrated" not in data


def test_evaluate_table_shows_each_metric_with_its_interval(tiny_run):
    result = invoke("evaluate", tiny_run, "--bootstrap", "200", "--ci-level", "0.9")
    assert result.returncode == 0, result.stderr
    assert "[90 % CI]: stratified percentile bootstrap, 200 resamples" in result.stdout
    macro = next(line for line in result.stdout.splitlines() if line.strip().startswith("macro"))
    assert macro.count("[") == 4  # precision, recall, F1, AUC: "0.9036 [0.871, 0.931]"
    assert "(90 % CI, DeLong)" in result.stdout and "ECE" in result.stdout and "reliability diagram" in result.stdout


def test_bootstrap_zero_omits_the_intervals(tiny_run):
    metrics = evaluate.evaluate_run(tiny_run, "val", bootstrap=0)
    assert "ci" not in metrics and 0 <= metrics["ece"] <= 1


@pytest.mark.parametrize("args, names", [
    (["--bootstrap", "-5"], ["--bootstrap -5", "--bootstrap 1000"]),
    (["--ci-level", "1.5"], ["--ci-level 1.5", "between 0 and 1"]),
    (["--ci-level", "0"], ["--ci-level 0", "--ci-level 0.95"]),
    (["--split", "valid"], ["--split valid", "train, val, test"]),
])
def test_bad_evaluate_options_are_one_line(tiny_run, args, names):
    assert_one_line_error(invoke("evaluate", tiny_run, *args), *names, exit_code=1)


def write_grouped_csv(folder, patients=10, images=2):
    """Two classes, each patient's images one class; the test split holds whole patients."""
    rng = np.random.default_rng(0)
    rows = ["path,label,group"]
    for p in range(2 * patients):
        label = p % 2
        for i in range(images):
            pixels = rng.normal(90 + 70 * label, 25, (32, 32)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"p{p}_{i}.png")
            rows.append(f"p{p}_{i}.png,{'ab' if label else ''}normal,patient{p}")
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    return folder / "table.csv"


def test_grouped_split_draws_whole_patients(tmp_path):
    (tmp_path / "data").mkdir()
    table = write_grouped_csv(tmp_path / "data")
    cfg = TrainConfig(**{**TINY, "dataset": "csv", "data_root": str(table),
                         "data_options": {"val_fraction": "0.3", "test_fraction": "0.3"}})
    run_dir, _ = session.train(cfg, tmp_path / "run")
    metrics = evaluate.evaluate_run(run_dir, "test", bootstrap=200)
    ci = metrics["ci"]
    test = predict.predict_split(run_dir, "test")
    assert ci["method"] == "cluster bootstrap over groups" and ci["resampled"] == "patients"
    assert ci["n_groups"] == len(set(test["groups"])) < metrics["n"]
    check_interval(ci["accuracy"])


# --------------------------------------------------------------------------------------- stored predictions

def test_predictions_round_trip_without_pickles(tiny_run, tmp_path):
    stored = load_predictions(tiny_run, "test")
    with np.load(tiny_run / "predictions_test.npz", allow_pickle=False) as data:
        assert data["ids"].dtype.kind == "U" and data["logits"].shape == (len(data["y_true"]), 7)
        assert "groups" not in data.files
    assert stored["task"] == "multiclass" and len(stored["classes"]) == 7 and stored["groups"] is None
    assert len(stored["ids"]) == len(stored["y_true"]) and all(isinstance(i, str) for i in stored["ids"])
    assert load_predictions(tiny_run, "val") is None

    run = shutil.copytree(tiny_run, tmp_path / "run")
    save_predictions(run, "val", [0, 1], np.zeros((2, 7)), ["a/b.png", "c.png"], groups=["p1", 2])
    again = load_predictions(run, "val")
    assert again["ids"] == ["a/b.png", "c.png"] and again["groups"].tolist() == ["p1", "2"]
    with pytest.raises(ValueError, match="differ in number"):
        save_predictions(run, "val", [0], np.zeros((2, 7)), ["a", "b"])


# ------------------------------------------------------------------------------------ calibrate, predict

def test_calibrate_then_evaluate_and_predict_report_calibrated_values(run_copy, tmp_path):
    result = invoke("calibrate", run_copy, "--json")
    assert result.returncode == 0, result.stderr
    saved = json.loads((run_copy / "calibration.json").read_text())
    assert saved["method"] == "temperature" and saved["fitted_on"] == "val" and saved["n"] == 42
    assert saved["temperature"] > 0 and saved["nll_after"] <= saved["nll_before"]
    assert json.loads(result.stdout)["temperature"] == saved["temperature"]

    metrics = evaluate.evaluate_run(run_copy, "test", bootstrap=0)
    calibrated = metrics["calibrated"]
    assert set(calibrated) >= {"ece", "brier", "nll", "temperature"}
    assert calibrated["temperature"] == saved["temperature"] and calibrated["fitted_on"] == "val"
    assert 0 <= calibrated["ece"] <= 1 and 0 <= calibrated["brier"] <= 2 and 0 <= metrics["ece"] <= 1

    image = tmp_path / "patch.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(image)
    [prediction] = predict.predict_images(run_copy, [str(image)])
    assert prediction["probability"] == prediction["probabilities"][prediction["prediction"]]
    assert prediction["calibrated_probability"] == prediction["calibrated_probabilities"][prediction["prediction"]]
    assert math.isclose(sum(prediction["calibrated_probabilities"].values()), 1.0, rel_tol=1e-6)
    assert "calibrated" in invoke("predict", run_copy, image).stdout
    assert "calibrated (temperature" in invoke("evaluate", run_copy, "--bootstrap", "0").stdout


def test_uncalibrated_predict_has_raw_probabilities_only(tiny_run, tmp_path):
    image = tmp_path / "patch.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(image)
    [prediction] = predict.predict_images(tiny_run, [str(image)])
    assert "calibrated_probability" not in prediction and "probabilities" in prediction


def test_calibrate_without_validation_images_is_one_line(run_copy, monkeypatch):
    original = calibrate.load_dataset

    def without_val(cfg):
        dataset = original(cfg)
        dataset.splits.pop("val")
        return dataset
    monkeypatch.setattr(calibrate, "load_dataset", without_val)
    assert_one_line_error(invoke("calibrate", run_copy), "val split", "never on test", exit_code=1)
    assert not (run_copy / "calibration.json").exists()


def test_damaged_calibration_file_is_one_line(run_copy):
    (run_copy / "calibration.json").write_text('{"method": "temperature", "temperature": -1}')
    with pytest.raises(TxkitError, match="no positive temperature; delete it or fit it again"):
        load_calibration(run_copy)


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
