"""k-fold cross-validation: the fold assignment (txkit.data.splits), a run of one fold (`folds`, `fold`), the
experiment grid's folds axis and its report (pooled out-of-fold metrics, the corrected t-test), `txkit data
info --folds K`, and the bad input around them. Real data: 245 NIH chest X-rays of 173 patients."""

import json
import math
from collections import Counter

import numpy as np
import pytest
from faults import assert_one_line_error
from helpers import SHARED_DATA, run_txkit
from sklearn.metrics import roc_auc_score

import txkit
from txkit.config import ConfigError, TrainConfig
from txkit.data.splits import (
    assign_folds,
    fold_parts,
    fold_pool,
    run_splits,
)
from txkit.experiments.plan import Plan
from txkit.experiments.report import build_report
from txkit.experiments.runner import run_experiment
from txkit.experiments.spec import ExperimentFileError, load_experiment
from txkit.plugins import create
from txkit.rundir import RunDir, load_predictions
from txkit.stats import corrected_resampled_ttest, probabilities

NIH = SHARED_DATA / "nih-pneumonia-256" / "labels.csv"
NIH_OPTIONS = {"path_column": "image", "group_column": "patient"}
NIH_ARGS = ["--dataset", "csv", "--data-root", str(NIH), "--data-option", "path_column=image",
            "--data-option", "group_column=patient"]
pytestmark = pytest.mark.skipif(not NIH.exists(), reason="needs ../shared/data/nih-pneumonia-256")


def nih(**options):
    return create("dataset", "csv", root=str(NIH), **{**NIH_OPTIONS, **options})


def quiet():
    from rich.console import Console

    return Console(quiet=True)


# --- the assignment ----------------------------------------------------------------------------------------

def test_folds_keep_patients_together_balance_classes_and_follow_only_their_seed():
    dataset = nih()
    pool = fold_pool(dataset)
    assert len(pool) == len(dataset.splits["train"]) + len(dataset.splits["val"])  # test is never folded
    assert not set(pool.ids) & set(dataset.splits["test"].ids)
    folds = assign_folds(pool, 5, seed=0, repeat=0, task="multiclass")
    patients = np.asarray(pool.groups)
    assert len(set(patients)) < len(patients)  # several images per patient
    assert all(len(set(folds[patients == p])) == 1 for p in set(patients))  # no patient in two folds
    counts = Counter(zip(folds.tolist(), pool.labels.tolist()))
    for cls in (0, 1):
        per_fold = [counts[(f, cls)] for f in range(5)]
        assert min(per_fold) > 0 and max(per_fold) - min(per_fold) <= 5, per_fold  # stratified, patients uneven
    assert np.array_equal(folds, assign_folds(pool, 5, 0, 0, "multiclass"))  # deterministic
    assert not np.array_equal(folds, assign_folds(pool, 5, 0, 1, "multiclass"))  # a repeat has its own folds
    assert not np.array_equal(folds, assign_folds(pool, 5, 1, 0, "multiclass"))  # and so has a fold seed


def test_a_fold_validates_on_a_patient_disjoint_slice_of_its_training_folds():
    dataset = nih()
    parts = fold_parts(dataset, 5, 2)
    units = np.asarray(parts.pool.groups)
    train, val, oof = (set(units[idx]) for idx in (parts.train, parts.val, parts.oof))
    assert not (train & val or train & oof or val & oof)
    assert sorted(np.concatenate([parts.train, parts.val, parts.oof]).tolist()) == list(range(len(parts.pool)))
    assert set(parts.pool.labels[parts.val].tolist()) == {0, 1}
    assert 0.1 < len(parts.val) / (len(parts.train) + len(parts.val)) < 0.2  # FOLD_VAL_SHARE of the patients
    record = parts.record
    assert (record["folds"], record["fold"], record["oof_images"]) == (5, 2, len(parts.oof))


def test_every_seed_and_cell_gets_the_same_folds():
    dataset = nih()
    base = {"dataset": "csv", "data_root": str(NIH), "data_options": NIH_OPTIONS, "folds": 5, "fold": 3}
    configs = [TrainConfig(**base), TrainConfig(**base, seed=7), TrainConfig(**base, strategy="last-layer"),
               TrainConfig(**base, fraction=0.5, backbone="resnet18")]
    held_out = {tuple(run_splits(dataset, cfg)["oof"].ids) for cfg in configs}
    validation = {tuple(run_splits(dataset, cfg)["val"].ids) for cfg in configs}
    assert len(held_out) == 1 and len(validation) == 1
    other = TrainConfig(**{**base, "fold_seed": 1})
    assert tuple(run_splits(dataset, other)["oof"].ids) not in held_out


def test_multilabel_folds_keep_patients_together_and_refuse_a_class_with_too_few_patients():
    from txkit.data.splits import check_fold_count
    from txkit.datasets.base import Split

    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(40)], 3)
    labels = (rng.random((len(patients), 3)) < [0.5, 0.3, 0.0]).astype(np.float32)
    labels[patients == "p7", 2] = 1.0  # the third label: one patient's images only
    split = Split(lambda i: None, labels, groups=patients)
    folds = assign_folds(split, 4, seed=0, repeat=0, task="multilabel")
    assert all(len(set(folds[patients == p])) == 1 for p in set(patients))
    assert sorted(Counter(folds).values()) == [30, 30, 30, 30]  # 10 patients of 3 images per fold
    with pytest.raises(ConfigError, match=r"`folds` 2: class 'c' has only 1 patients.*use `folds` 1 or fewer"):
        check_fold_count(split, 2, ["a", "b", "c"], "multilabel")


def test_fraction_applies_inside_the_training_folds(tiny_cfg):
    from txkit.training.engine import Trainer

    cfg = tiny_cfg(folds=3, fold=2, fraction=0.5, image_size=32, image_cache=False)
    trainer = Trainer(cfg)
    parts = trainer.folds
    trained = set(trainer.train_data.split.ids)
    assert trained < set(parts.pool.subset(parts.train).ids)
    available = Counter(parts.pool.labels[parts.train].tolist())
    kept = Counter(trainer.train_data.split.labels.tolist())
    assert kept == {c: max(1, round(n / 2)) for c, n in available.items()}  # half of each class
    assert trainer.val_data.split.ids == parts.pool.subset(parts.val).ids


# --- the corrected resampled t-test ------------------------------------------------------------------------

def test_corrected_t_test_matches_a_hand_computation():
    # Three folds (J = 3, 2 degrees of freedom), each model trained on 90 images and tested on 45:
    #   mean d = (0.03 + 0.05 + 0.01) / 3 = 0.03
    #   s^2 = ((0)^2 + (0.02)^2 + (-0.02)^2) / (3 - 1) = 0.0004
    #   corrected variance = (1/3 + 45/90) * 0.0004 = (5/6) * 0.0004 = 1/3000
    #   t = 0.03 / sqrt(1/3000) = 0.03 * 54.7722558 = 1.6431677
    # Student's t with 2 df has the closed form P(|T| > t) = 1 - t / sqrt(2 + t^2):
    #   p = 1 - 1.6431677 / sqrt(2 + 2.7) = 1 - 1.6431677 / 2.1679483 = 0.2420633
    # The plain paired t-test: t = 0.03 / sqrt(0.0004 / 3) = 2.5980762, p = 1 - 2.5980762 / sqrt(8.75) = 0.1216899
    # The 95 % interval: t_{0.975, 2} = 0.95 / sqrt(2 * 0.975 * 0.025) = 4.3026527, half width
    #   4.3026527 * sqrt(1/3000) = 0.0785553.
    result = corrected_resampled_ttest([0.03, 0.05, 0.01], n_train=90, n_test=45)
    assert result["n_folds"] == 3 and result["df"] == 2
    assert result["mean"] == pytest.approx(0.03)
    assert result["correction"] == pytest.approx(5 / 6)
    assert result["t"] == pytest.approx(1.6431677, abs=1e-6)
    assert result["p_value"] == pytest.approx(0.2420633, abs=1e-6)
    assert result["plain_t"] == pytest.approx(2.5980762, abs=1e-6)
    assert result["plain_p_value"] == pytest.approx(0.1216899, abs=1e-6)
    assert (result["low"], result["high"]) == (pytest.approx(0.03 - 0.0785553, abs=1e-6),
                                               pytest.approx(0.03 + 0.0785553, abs=1e-6))
    flat = corrected_resampled_ttest([0.02, 0.02, 0.02], 90, 45)  # no spread: nothing to test against
    assert math.isnan(flat["t"]) and math.isnan(flat["p_value"]) and flat["low"] == flat["high"] == 0.02


# --- a run of one fold -------------------------------------------------------------------------------------

def test_python_api_trains_one_fold_and_stores_its_out_of_fold_predictions(tmp_path, tiny_cfg):
    # synthetic-dld has no patients: each image is its own unit
    cfg = tiny_cfg(epochs=1, folds=3, fold=1, backbone="timm/test_resnet", data_options={"per_class": 6, "size": 16})
    run = txkit.train(cfg.replace(cache_dir=str(tmp_path / "cache")), out=tmp_path / "run", progress=False)
    recorded = run.resolved["folds"]
    assert (recorded["folds"], recorded["fold"], recorded["grouped_by"]) == (3, 1, "image")
    stored = load_predictions(run.path, "oof")
    assert len(stored["ids"]) == recorded["oof_images"] and stored["groups"] is None
    dataset = create("dataset", cfg.dataset, **cfg.data_options)
    assert stored["ids"] == run_splits(dataset, cfg)["oof"].ids
    assert run.summary["oof"]["auc"] == pytest.approx(run.evaluate("oof", bootstrap=0, device="cpu")["auc"])


# --- an experiment with a folds axis -------------------------------------------------------------------------

CV_EXPERIMENT = """
[experiment]
name = "cv"

[defaults]
backbone = "timm/test_resnet"
weights = "none"
epochs = 1
batch_size = 64
image_size = 16
device = "cpu"
cache_dir = "{cache}"

[target]
dataset = "csv"
data_root = "{data}"
data_options = {{ path_column = "image", group_column = "patient" }}

[grid]
strategies = ["full", "last-layer"]
folds = 5

[report]
compare = [["full", "last-layer"]]
"""


@pytest.fixture(scope="module")
def cv_experiment(tmp_path_factory):
    """Two cells x 5 folds on the NIH images at 16 px, one epoch each (about 30 s), and its report."""
    folder = tmp_path_factory.mktemp("cv")
    path = folder / "cv.toml"
    path.write_text(CV_EXPERIMENT.format(cache=folder / "cache", data=NIH))
    root, counts = run_experiment(path, folder / "exp", console=quiet())
    assert counts == {"done": 10}
    return root, build_report(root)


def test_every_pooled_image_is_out_of_fold_once_and_no_patient_crosses_folds(cv_experiment):
    root, _ = cv_experiment
    plan = Plan.load(root)
    pool = fold_pool(nih())
    for strategy in ("full", "last-layer"):
        runs = [r for r in plan.cells() if r.cell["strategy"] == strategy]
        assert sorted(r.cell["fold"] for r in runs) == [0, 1, 2, 3, 4]
        assert all(f"fold{r.cell['fold']}of5" in r.id for r in runs)
        held_out = {r.cell["fold"]: load_predictions(root / r.directory, "oof") for r in runs}
        ids = [i for fold in held_out.values() for i in fold["ids"]]
        assert Counter(ids) == Counter(pool.ids)  # every image exactly once
        patient_folds = {}
        for fold, stored in held_out.items():
            for patient in stored["groups"]:
                patient_folds.setdefault(str(patient), set()).add(fold)
        assert all(len(folds) == 1 for folds in patient_folds.values())
        assert len(patient_folds) == len(set(pool.groups))


def test_fold_assignment_is_recorded_and_equal_across_cells(cv_experiment):
    root, _ = cv_experiment
    records = [RunDir(root / r.directory).resolved()["folds"] for r in Plan.load(root).cells()]
    assert len({r["assignment_sha256"] for r in records}) == 1
    assert {(r["folds"], r["fold_seed"], r["repeat"], tuple(r["pool"])) for r in records} == \
        {(5, 0, 0, ("train", "val"))}


def test_pooled_out_of_fold_auc_is_the_auc_of_the_concatenated_fold_predictions(cv_experiment):
    root, report = cv_experiment
    plan = Plan.load(root)
    rows = {row["strategy"]: row for row in report["crossval"]["cells"]}
    for strategy, row in rows.items():
        runs = sorted((r for r in plan.cells() if r.cell["strategy"] == strategy), key=lambda r: r.cell["fold"])
        stored = [load_predictions(root / r.directory, "oof") for r in runs]
        y_true = np.concatenate([s["y_true"] for s in stored])
        logits = np.concatenate([s["logits"] for s in stored])
        assert row["oof_auc"] == pytest.approx(roc_auc_score(y_true, logits[:, 1] - logits[:, 0]))
        assert row["oof_accuracy"] == pytest.approx(np.mean(probabilities(logits, "multiclass").argmax(1) == y_true))
        assert row["oof_auc_low"] <= row["oof_auc"] <= row["oof_auc_high"]
        fold_aucs = [roc_auc_score(s["y_true"], s["logits"][:, 1] - s["logits"][:, 0]) for s in stored]
        assert row["fold_auc_mean"] == pytest.approx(np.mean(fold_aucs))
        assert row["fold_auc_std"] == pytest.approx(np.std(fold_aucs, ddof=1))
        assert row["oof_images"] == len(y_true) and row["fold_runs"] == 5


def test_compared_cells_get_the_corrected_t_test_over_folds_and_delong_on_pooled_predictions(cv_experiment):
    root, report = cv_experiment
    plan = Plan.load(root)
    (test,) = report["crossval"]["compare"]
    assert (test["a"], test["b"], test["J"], test["seed"]) == ("full", "last-layer", 5, 0)
    per_fold = {}
    for run in plan.cells():
        stored = load_predictions(root / run.directory, "oof")
        auc = roc_auc_score(stored["y_true"], stored["logits"][:, 1] - stored["logits"][:, 0])
        per_fold[(run.cell["strategy"], run.cell["fold"])] = (auc, RunDir(root / run.directory).resolved())
    differences = [per_fold[("full", f)][0] - per_fold[("last-layer", f)][0] for f in range(5)]
    n_train = np.mean([per_fold[key][1]["train_images"] for key in per_fold])
    n_test = np.mean([per_fold[("full", f)][1]["folds"]["oof_images"] for f in range(5)])
    expected = corrected_resampled_ttest(differences, n_train, n_test)
    assert test["auc_difference"] == pytest.approx(np.mean(differences))
    assert test["auc_p"] == pytest.approx(expected["p_value"])
    assert test["auc_p"] >= test["auc_plain_p"]  # the correction only ever widens
    (delong,) = test["delong"]
    assert delong["n"] == 206 and delong["difference"] == pytest.approx(
        report["crossval"]["cells"][0]["oof_auc"] - report["crossval"]["cells"][1]["oof_auc"])
    assert report["wilcoxon"] == [] and report["paired"] == []  # folds are not independent seeds
    markdown = (root / "report" / "results.md").read_text()
    assert "## Cross-validation: 5 folds" in markdown and "### Compared over folds" in markdown
    assert len((root / "report" / "crossval_compare.csv").read_text().splitlines()) == 2


# --- txkit data info --folds --------------------------------------------------------------------------------

def test_data_info_shows_the_folds_and_refuses_more_folds_than_a_class_has_patients():
    args = ["data", "info", "csv", *NIH_ARGS[2:], "--sample", "0", "--intensity-sample", "0"]
    shown = run_txkit(*args, "--folds", "5")
    assert shown.returncode == 0, shown.stderr
    assert "5 folds of train+val (206 images), grouped by patient," in " ".join(shown.stdout.split())
    assert "fold 4" in shown.stdout and "test (not folded)" in shown.stdout
    data = json.loads(run_txkit(*args, "--folds", "5", "--json").stdout)["folds"]
    assert sum(f["images"] for f in data["per_fold"]) == 206
    assert sum(f["patients"] for f in data["per_fold"]) == 147
    assert sum(f["positives"]["pneumonia"] for f in data["per_fold"]) == 94 + 15
    smallest = min(data["class_patients"].values())
    refused = run_txkit(*args, "--folds", str(smallest + 1))
    assert_one_line_error(refused, f"--folds {smallest + 1}", f"--folds {smallest} or fewer")


# --- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, names", [
    (["--folds", "1", "--fold", "0"], ["--folds", "2 or more"]),
    (["--fold", "2"], ["--fold 2", "needs --folds"]),
    (["--folds", "5", "--fold", "5"], ["--fold 5", "0..4"]),
    (["--folds", "5", "--fold", "-1"], ["--fold", "0 or more"]),
    (["--folds", "5"], ["--folds 5", "needs --fold"]),
    (["--folds", "80", "--fold", "0"], ["--folds 80", "or fewer"]),
])
def test_bad_fold_options_fail_in_one_line_before_anything_trains(tmp_path, options, names):
    out = tmp_path / "run"
    result = run_txkit("train", *NIH_ARGS, "--backbone", "timm/test_resnet", "--weights", "none", "--epochs", "1",
                       "--image-size", "16", "--device", "cpu", "--out", str(out), *options)
    assert_one_line_error(result, *names)
    assert not out.exists()


def test_python_api_names_the_fold_field():
    with pytest.raises(ConfigError, match=r"`fold` 7 is outside 0\.\.4"):
        txkit.train(dataset="csv", data_root=str(NIH), folds=5, fold=7)


@pytest.mark.parametrize("grid, message", [
    ("folds = 1", "[grid] folds: must be a whole number of folds, 2 or more"),
    ("repeats = 2", "[grid] repeats: repeats the K-fold split: set [grid] folds"),
    ("folds = 5\nrepeats = 0", "[grid] repeats: must be a whole number, 1 or more"),
])
def test_experiment_file_fold_errors_name_the_table(tmp_path, grid, message):
    path = tmp_path / "cv.toml"
    path.write_text(CV_EXPERIMENT.format(cache=tmp_path, data=NIH).replace("folds = 5", grid))
    with pytest.raises(ExperimentFileError) as error:
        load_experiment(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_plan_runs_every_cell_once_per_fold_repeat_and_seed_with_the_same_folds(tmp_path):
    from txkit.experiments.plan import expand

    path = tmp_path / "cv.toml"
    body = CV_EXPERIMENT.format(cache=tmp_path, data=NIH).replace("folds = 5", "folds = 3\nrepeats = 2\nseeds = [0, 1]")
    path.write_text(body.replace('device = "cpu"', 'device = "cpu"\nfold_seed = 4'))
    plan = expand(load_experiment(path), tmp_path / "exp")
    cells = plan.cells()
    assert len(cells) == 2 * 2 * 3 * 2  # strategies x seeds x folds x repeats
    assert len({run.id for run in cells}) == len(cells)
    assert {(run.config["folds"], run.config["fold_seed"]) for run in cells} == {(3, 4)}
    keys = Counter((run.cell["repeat"], run.cell["fold"]) for run in cells)
    assert keys == {(r, f): 4 for r in range(2) for f in range(3)}  # each fold of each repeat: 2 cells x 2 seeds
    run = next(r for r in cells if r.cell["repeat"] == 1 and r.cell["fold"] == 2 and r.seed == 1)
    assert "-s1-fold2of3-rep1-" in run.id and run.config["fold"] == 2 and run.config["fold_repeat"] == 1


def test_fold_seed_without_folds_and_in_a_stage_is_refused(tmp_path):
    path = tmp_path / "cv.toml"
    body = CV_EXPERIMENT.format(cache=tmp_path, data=NIH)
    path.write_text(body.replace("folds = 5\n", "").replace('device = "cpu"', 'device = "cpu"\nfold_seed = 1'))
    with pytest.raises(ExperimentFileError, match=r"\[defaults\]: fold_seed seeds the folds of \[grid\] folds"):
        load_experiment(path)
    path.write_text(body + '\n[stages.pre]\nfold_seed = 1\n')
    with pytest.raises(ExperimentFileError, match=r"\[stages.pre\]: fold_seed cannot be set here"):
        load_experiment(path)


def test_experiment_tables_may_not_set_a_fold(tmp_path):
    path = tmp_path / "cv.toml"
    path.write_text(CV_EXPERIMENT.format(cache=tmp_path, data=NIH).replace('device = "cpu"', 'device = "cpu"\nfold = 1'))
    with pytest.raises(ExperimentFileError, match=r"\[defaults\]: fold is set per run by the grid"):
        load_experiment(path)


def test_experiment_with_more_folds_than_patients_fails_before_anything_trains(tmp_path):
    path = tmp_path / "cv.toml"
    path.write_text(CV_EXPERIMENT.format(cache=tmp_path, data=NIH).replace("folds = 5", "folds = 80"))
    result = run_txkit("experiment", "run", str(path), "--out", str(tmp_path / "exp"))
    assert_one_line_error(result, "[grid] folds = 80", "folds 74 or fewer")
    assert not (tmp_path / "exp").exists()
