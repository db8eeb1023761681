"""A finished run evaluated, calibrated and used to predict: intervals, calibration and stored predictions in
`txkit evaluate`, `txkit calibrate` and `txkit predict`; the intensity rule recorded at training time is the one
applied, and evaluation runs on the inference runtime.

Trained numbers differ between machines, so only properties that hold for any model are asserted: bounds
in order, values in range, keys present."""

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faults import assert_one_line_error
from helpers import tiny_config

from txkit.cli.main import build_cli
from txkit.errors import TxkitError
from txkit.config import TrainConfig
from txkit.datasets.intensity import IntensityRule
from txkit.run import calibrate, evaluate, predict
from txkit.run.evaluate import evaluate_run
from txkit.run.load import open_run
from txkit.run.predict import predict_split
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


# ------------------------------------------------------------------- the recorded rule, the inference runtime

def write_16_bit_folder(root, per_class=6, seed=0):
    """train/val/test of two classes of 16-bit PNGs: class b is brighter than class a."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        for label, base in (("a", 8000), ("b", 20000)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = rng.normal(base, 3000, (32, 32)).clip(0, 65535).astype(np.uint16)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def percentile_run(module_tmp):
    data = write_16_bit_folder(module_tmp("data16"))
    cfg = tiny_config(dataset="imagefolder", data_root=str(data), data_options={}, intensity="percentile:1:99",
                      epochs=1, image_size=32)
    run_dir, summary = session.train(cfg, module_tmp("run") / "run")
    return data, run_dir, summary


def test_evaluate_after_the_training_folder_changed_gives_the_metrics_recorded_at_training_time(percentile_run):
    data, run_dir, summary = percentile_run
    recorded = json.loads((run_dir / "config.json").read_text())["resolved"]["intensity"]["bounds"]
    before = predict_split(run_dir, "test")["logits"]
    # new, much brighter training images: a rule fitted again on today's folder has other percentile bounds
    for i in range(12):
        Image.fromarray(np.full((32, 32), 65000, np.uint16)).save(data / "train" / "a" / f"new{i}.png")
    refit = IntensityRule.parse("percentile:1:99").fit(_train_split(run_dir))
    assert list(refit.bounds) != recorded  # the folder change really moves the bounds
    after = evaluate_run(run_dir, "test", bootstrap=0)
    np.testing.assert_array_equal(predict_split(run_dir, "test")["logits"], before)
    for metric in ("accuracy", "auc", "f1"):
        assert after[metric] == pytest.approx(summary["test"][metric], abs=1e-12)


def test_evaluation_with_loader_workers_gives_the_same_logits(percentile_run):
    _, run_dir, _ = percentile_run
    in_process = predict_split(run_dir, "test", num_workers=0)["logits"]
    with_workers = predict_split(run_dir, "test", num_workers=2)["logits"]
    np.testing.assert_array_equal(in_process, with_workers)


def _train_split(run_dir):
    from txkit.training.engine import load_dataset

    return load_dataset(open_run(run_dir).cfg).split("train")
