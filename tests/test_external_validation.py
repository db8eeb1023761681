"""Validation for little data (issue 23, items 2-4 and 7): a finished run scored on an external dataset in its own
classes (a class map for other names), per-subgroup metrics with the largest gap, and operating points whose
thresholds are chosen on the validation split, stored in the run and used by `txkit predict`.

One tiny run trained once per module on a csv dataset of 32 px images ("hospital A", classes normal/pneumonia,
per-image sex and age); "hospital B" names the same classes healthy/sick. The real-data test scores that run on
../shared/data/nih-pneumonia-256 (245 adult NIH chest X-rays of 173 patients) by sex."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from faults import assert_one_line_error
from helpers import SHARED_DATA, run_txkit, tiny_config
from txkit.errors import TxkitError
from txkit.run.evaluate import evaluate_run
from txkit.run.external import external_target
from txkit.run.predict import predict_images, predict_split
from txkit.stats import choose_threshold
from txkit.testing import write_image
from txkit.training import session
from txkit.training.metrics import compute_metrics_from_logits

NIH = SHARED_DATA / "nih-pneumonia-256" / "labels.csv"
NIH_OPTIONS = {"path_column": "image", "group_column": "patient", "subgroups": "sex,age,view"}


def write_csv_dataset(folder: Path, counts: dict, names=("normal", "pneumonia"), seed: int = 0,
                      split_column: bool = True, broken: str | None = None) -> Path:
    """folder/labels.csv with path,label[,split],group,sex,age: two 32 px images per patient, the second class
    brighter; ``counts`` = {split: images per class}. Patients alternate F/M and ages 30/50, but the first patient
    of the test split is 70 (a subgroup of two images of one class).
    ``broken``: "missing" lists a file that is not there, "corrupt" cuts the first image in half."""
    rng = np.random.default_rng(seed)
    rows, patient = [], 0
    for split, per_class in counts.items():
        for k, name in enumerate(names):
            for i in range(0, per_class, 2):
                patient += 1
                for j in range(min(2, per_class - i)):
                    path = f"images/{split}_{name}_{i + j}.png"
                    pixels = np.clip(rng.normal(70 + 100 * k, 40, (32, 32)), 0, 255).astype(np.uint8)
                    write_image(folder / path, pixels)
                    age = 70 if (split, k, i) == ("test", 0, 0) else 30 + 20 * (patient % 2)
                    row = {"path": path, "label": name, "group": f"p{seed}-{patient}",
                           "sex": "FM"[patient % 2], "age": str(age)}
                    if split_column:
                        row["split"] = split
                    rows.append(row)
    if broken == "missing":
        rows.append({**rows[-1], "path": "images/not_there.png"})
    if broken == "corrupt":
        write_image(folder / rows[0]["path"], truncate=True)
    table = folder / "labels.csv"
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


@pytest.fixture(scope="module")
def data(module_tmp):
    base = module_tmp("hospitals")
    return {
        "a": write_csv_dataset(base / "a", {"train": 12, "val": 8, "test": 10}),
        "b": write_csv_dataset(base / "b", {"train": 10}, names=("healthy", "sick"), seed=1, split_column=False),
        "b_as_a": write_csv_dataset(base / "b_as_a", {"train": 10}, seed=1, split_column=False),
        "normal_only": write_csv_dataset(base / "normal_only", {"test": 6}, names=("normal",), seed=2),
        "extra": write_csv_dataset(base / "extra", {"test": 4}, names=("normal", "pneumonia", "covid"), seed=3),
        "missing": write_csv_dataset(base / "missing", {"test": 4}, seed=4, broken="missing"),
        "corrupt": write_csv_dataset(base / "corrupt", {"test": 4}, seed=5, broken="corrupt"),
    }


@pytest.fixture(scope="module")
def run(module_tmp, data):
    """Hospital A's run, trained without subgroups (evaluate adds them)."""
    cfg = tiny_config(dataset="csv", data_root=str(data["a"]), data_options={}, epochs=1, image_size=32)
    run_dir, _ = session.train(cfg, module_tmp("run") / "run")
    return run_dir


@pytest.fixture
def run_copy(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / "run")


ALL_IN_TRAIN = {"val_fraction": "0", "test_fraction": "0"}  # no split column: every image in train


# --- external validation --------------------------------------------------------------------------------------
def test_an_external_dataset_with_other_class_names_is_scored_through_the_class_map(run, data):
    with pytest.raises(TxkitError, match=r"classes healthy, sick match no class of the run \(normal, pneumonia\); "
                                         r"map each to a run class with `class_map`"):
        evaluate_run(run, dataset="csv", data_root=str(data["b"]), data_options=ALL_IN_TRAIN, bootstrap=0)
    mapped = evaluate_run(run, dataset="csv", data_root=str(data["b"]), data_options=ALL_IN_TRAIN,
                          class_map="healthy=normal,sick=pneumonia", bootstrap=200, device="cpu")
    renamed = evaluate_run(run, dataset="csv", data_root=str(data["b_as_a"]), data_options=ALL_IN_TRAIN,
                           bootstrap=200, device="cpu")
    source = mapped["dataset"]
    assert (source["split"], source["n"], source["classes"]) == ("all", 20, ["healthy", "sick"])
    assert source["class_map"] == {"healthy": "normal", "sick": "pneumonia"}
    assert "no test split" in source["note"] and source["absent_classes"] == []
    assert mapped["classes"] == ["normal", "pneumonia"]
    assert mapped["per_class"]["normal"]["support"] == 10 and mapped["per_class"]["pneumonia"]["support"] == 10
    for metric in ("accuracy", "auc", "f1", "nll"):  # the same pixels under the run's names give the same numbers
        assert mapped[metric] == renamed[metric]
    assert mapped["ci"]["auc"] == renamed["ci"]["auc"]
    assert Path(mapped["roc_png"]).name == "roc_external-csv-all.png"


def test_external_images_go_through_the_runs_recorded_size_and_rule(run, data):
    target = external_target(["normal", "pneumonia"], "multiclass", "csv", str(data["b_as_a"]), ALL_IN_TRAIN)
    predicted = predict_split(run, target.split, dataset=target.dataset, device="cpu")
    singles = predict_images(run, target.part.sources, device="cpu")  # predict: the run's rule and size
    np.testing.assert_allclose(predicted["probs"], [[r["probabilities"][c] for c in ("normal", "pneumonia")]
                                                    for r in singles], atol=1e-6)


def test_run_classes_missing_from_the_external_data_are_reported_and_left_out_of_the_macro(run, data):
    metrics = evaluate_run(run, dataset="csv", data_root=str(data["normal_only"]), bootstrap=100, device="cpu")
    assert metrics["dataset"]["absent_classes"] == ["pneumonia"] and metrics["macro_over"] == ["normal"]
    assert metrics["per_class"]["pneumonia"]["absent"] and not metrics["per_class"]["normal"]["absent"]
    assert metrics["recall"] == metrics["per_class"]["normal"]["recall"]  # not halved by the absent class
    assert metrics["precision"] == metrics["per_class"]["normal"]["precision"]
    low, high = metrics["ci"]["recall"]
    assert low <= metrics["recall"] <= high


def test_evaluate_cli_on_an_external_dataset_prints_where_the_images_came_from(run, data):
    result = run_txkit("evaluate", str(run), "--dataset", "csv", "--data-root", str(data["normal_only"]),
                       "--bootstrap", "50", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "external dataset csv" in result.stdout and "the test split of csv" in result.stdout
    assert "classes of the run without images here: pneumonia" in result.stdout
    assert "absent" in result.stdout


@pytest.mark.parametrize("args, names", [
    (["--class-map", "healthy=normal,sick=pneumonia,covid=normal"], ["--class-map", "'covid'", "not a class of "
                                                                     "the external dataset"]),
    (["--class-map", "healthy=normal,sick=pneumonya"], ["--class-map", "'pneumonya'", "not a class of the run"]),
    (["--class-map", "healthy"], ["--class-map", "EXTERNAL=RUN"]),
])
def test_a_class_map_naming_unknown_classes_is_one_line(run, data, args, names):
    result = run_txkit("evaluate", str(run), "--dataset", "csv", "--data-root", str(data["b"]), *args,
                       "--data-option", "val_fraction=0", "--data-option", "test_fraction=0")
    assert_one_line_error(result, *names)


def test_extra_classes_in_the_external_data_are_refused_in_one_line(run, data):
    result = run_txkit("evaluate", str(run), "--dataset", "csv", "--data-root", str(data["extra"]))
    line = assert_one_line_error(result, "--dataset csv", "covid", "--class-map", "never learnt")
    assert "normal," not in line.split("class covid")[0]  # only the unmatched class is named


@pytest.mark.parametrize("which, words", [("missing", "1 of 9 images not found"), ("corrupt", "fails to read")])
def test_an_external_dataset_whose_images_fail_to_read_is_one_line_before_the_network_runs(run_copy, data, which,
                                                                                         words):
    before = set(Path(run_copy).iterdir())
    result = run_txkit("evaluate", str(run_copy), "--dataset", "csv", "--data-root", str(data[which]))
    assert_one_line_error(result, "--dataset csv", "--data-root", words, "--data-option skip_bad_images=true")
    assert set(Path(run_copy).iterdir()) == before  # nothing was predicted, no plot written


def test_split_all_is_only_for_an_external_dataset(run):
    result = run_txkit("evaluate", str(run), "--split", "all")
    assert_one_line_error(result, "--split all", "--dataset")


# --- subgroups ------------------------------------------------------------------------------------------------
def test_per_sex_metrics_on_real_nih_chest_x_rays_with_intervals_and_the_gap(run):
    by = evaluate_run(run, dataset="csv", data_root=str(NIH), data_options=NIH_OPTIONS, split="all", by="sex",
                      bootstrap=200, device="cpu")["subgroups"]["sex"]
    groups = by["subgroups"]
    assert list(groups) == ["F", "M"]
    assert (groups["F"]["n"], groups["M"]["n"]) == (120, 125)  # labels.csv: 120 F, 125 M images
    assert groups["F"]["n_groups"] + groups["M"]["n_groups"] == 173  # every patient has one sex
    assert by["method"] == "cluster bootstrap over groups"
    target = external_target(["normal", "pneumonia"], "multiclass", "csv", str(NIH), NIH_OPTIONS, split="all")
    predicted = predict_split(run, "all", dataset=target.dataset, device="cpu")
    sex = target.part.metadata["sex"]
    for name in ("F", "M"):  # each subgroup's numbers are those of its own images
        rows = sex == name
        expected = compute_metrics_from_logits(predicted["y_true"][rows], predicted["logits"][rows],
                                               ["normal", "pneumonia"], "multiclass")
        assert groups[name]["auc"] == pytest.approx(expected["auc"], abs=1e-12)
        assert groups[name]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
        assert groups[name]["too_small"] is None
        for metric in ("accuracy", "auc"):
            low, high = groups[name]["ci"][metric]
            assert 0 <= low < high <= 1
    gap = by["gaps"]["auc"]
    assert gap["gap"] == pytest.approx(abs(groups["F"]["auc"] - groups["M"]["auc"]), abs=1e-12)
    assert sorted(gap["between"]) == ["F", "M"] and gap["low"] < gap["high"] and gap["n_valid"] >= 100


def test_by_adds_metadata_to_the_runs_own_dataset_and_warns_about_a_subgroup_too_small(run):
    result = run_txkit("evaluate", str(run), "--data-option", "subgroups=sex,age", "--by", "sex", "--by", "age",
                       "--bootstrap", "100", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "by sex" in result.stdout and "largest gap by sex: accuracy" in result.stdout
    # the test split's >=60 bin holds one patient, two normal images: no interval, named in a warning
    assert "warning: --by age: subgroup >=60 (2 images) is too small for an interval: fewer than 2 cases of class" \
        in result.stderr
    assert ">=60 (too small)" in result.stdout


def test_by_a_column_that_does_not_exist_lists_the_ones_there_are(run):
    result = run_txkit("evaluate", str(run), "--data-option", "subgroups=sex,age", "--by", "gender")
    assert_one_line_error(result, "--by gender", "it has: sex, age")
    result = run_txkit("evaluate", str(run), "--by", "sex")
    assert_one_line_error(result, "--by sex", "no per-image metadata", "--data-option subgroups=sex")


def test_added_data_options_may_not_change_the_runs_test_images(run):
    with pytest.raises(TxkitError, match=r"other images in its test split than the run was tested on"):
        evaluate_run(run, data_options={"split_column": "none", "subgroups": "sex"}, bootstrap=0)


def test_a_subgroups_column_the_csv_lacks_is_one_line(run, data):
    result = run_txkit("evaluate", str(run), "--dataset", "csv", "--data-root", str(data["b"]), "--data-option",
                       "subgroups=sex,site")
    assert_one_line_error(result, "--data-option subgroups", "'site'", "path,label,group,sex,age")


# --- operating points -----------------------------------------------------------------------------------------
def test_thresholds_are_chosen_on_the_validation_split_stored_and_used_at_test(run_copy):
    metrics = evaluate_run(run_copy, threshold="youden", bootstrap=100, device="cpu")
    stored = json.loads((Path(run_copy) / "thresholds.json").read_text())
    assert stored["rule"] == "youden" and stored["fitted_on"] == "val" and stored["n"] == 16
    val, test = predict_split(run_copy, "val", device="cpu"), predict_split(run_copy, "test", device="cpu")
    for k, name in enumerate(["normal", "pneumonia"]):
        chosen = choose_threshold(val["y_true"] == k, val["probs"][:, k], "youden")
        assert stored["classes"][name]["threshold"] == chosen["threshold"]
        assert chosen["threshold"] in val["probs"][:, k] and chosen["threshold"] not in test["probs"][:, k]
        on_test = choose_threshold(test["y_true"] == k, test["probs"][:, k], "youden")["threshold"]
        assert on_test != chosen["threshold"]  # chosen on test it would be another number
        # and at that threshold, the test split's sensitivity and specificity
        called, positive = test["probs"][:, k] >= chosen["threshold"], test["y_true"] == k
        point = metrics["operating_points"]["per_class"][name]
        assert point["sensitivity"] == (called & positive).sum() / positive.sum()
        assert point["specificity"] == (~called & ~positive).sum() / (~positive).sum()
        assert point["ppv"] == pytest.approx((called & positive).sum() / max(called.sum(), 1)) or called.sum() == 0
        for metric in ("sensitivity", "specificity"):
            low, high = metrics["operating_points"]["ci"][name][metric]
            assert 0 <= low <= high <= 1
    assert metrics["operating_points"]["fitted_on"] == "val" and metrics["operating_points"]["split"] == "test"


def test_a_target_sensitivity_is_reached_on_the_validation_split(run_copy):
    metrics = evaluate_run(run_copy, threshold="sensitivity=0.9", bootstrap=0, device="cpu")
    for entry in metrics["operating_points"]["val"].values():
        assert entry["sensitivity"] >= 0.9


def test_predict_decides_at_the_stored_thresholds_and_threshold_overrides(run_copy, data):
    evaluate_run(run_copy, threshold="youden", bootstrap=0, device="cpu")
    stored = json.loads((Path(run_copy) / "thresholds.json").read_text())
    images = [str(p) for p in sorted((data["a"].parent / "images").glob("test_*.png"))[:4]]
    results = predict_images(run_copy, images, device="cpu")
    for r in results:
        assert r["threshold_rule"] == "youden"
        assert r["decisions"] == {c: r["probabilities"][c] >= stored["classes"][c]["threshold"]
                                  for c in ("normal", "pneumonia")}
    before = (Path(run_copy) / "thresholds.json").read_bytes()
    result = run_txkit("predict", str(run_copy), *images, "--threshold", "0.99", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert all("positive at the 0.99 thresholds:" in line for line in result.stdout.splitlines())
    overridden = predict_images(run_copy, images, device="cpu", threshold="f1")
    assert all(r["threshold_rule"] == "f1" for r in overridden)
    assert (Path(run_copy) / "thresholds.json").read_bytes() == before  # an override is not stored


@pytest.mark.parametrize("command, value, words", [
    ("evaluate", "youdn", ["--threshold youdn", "not a threshold rule", "youden, f1, sensitivity=0.9"]),
    ("evaluate", "sensitivity=1.5", ["--threshold sensitivity=1.5", "strictly between 0 and 1"]),
    ("evaluate", "sensitivity=0", ["--threshold sensitivity=0", "strictly between 0 and 1"]),
    ("evaluate", "specificity=high", ["--threshold specificity=high", "needs a number"]),
    ("evaluate", "1.2", ["--threshold 1.2", "strictly between 0 and 1"]),
    ("predict", "sensitivity=-0.2", ["--threshold sensitivity=-0.2", "strictly between 0 and 1"]),
])
def test_a_threshold_that_does_not_parse_is_one_line_before_anything_runs(run_copy, data, command, value, words):
    extra = [str(next((data["a"].parent / "images").glob("*.png")))] if command == "predict" else []
    result = run_txkit(command, str(run_copy), *extra, "--threshold", value)
    assert_one_line_error(result, *words)
    assert not (Path(run_copy) / "thresholds.json").exists()


def test_evaluate_prints_operating_points_and_subgroups_at_the_thresholds(run_copy):
    result = run_txkit("evaluate", str(run_copy), "--threshold", "youden", "--data-option", "subgroups=sex",
                       "--by", "sex", "--bootstrap", "100", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "operating points at the youden thresholds (chosen on the val split" in out
    assert "sensitivity pneumonia" in out and "largest gap by sex" in out
    assert (Path(run_copy) / "thresholds.json").exists()
    again = run_txkit("evaluate", str(run_copy), "--bootstrap", "0", "--device", "cpu")  # read from the file
    assert "operating points at the youden thresholds" in again.stdout and "read from" in again.stdout


def test_csv_subgroups_follow_their_rows_through_skip_bad_images_and_splits(data):
    from txkit.plugins import create

    dataset = create("dataset", "csv", root=str(data["corrupt"]), subgroups="sex,age", skip_bad_images="true")
    test = dataset.split("test")
    assert dataset.info["skipped_images"] == 1 and len(test) == 7
    rows = {r["path"]: r for r in csv.DictReader(open(data["corrupt"]))}
    for k, source in enumerate(test.sources):
        row = rows[str(Path(source).relative_to(data["corrupt"].parent))]
        assert test.metadata["sex"][k] == row["sex"]
        assert test.metadata["age"][k] == ("<40" if row["age"] == "30" else "40-59" if row["age"] == "50" else ">=60")
    part = test.subset([3, 1])
    assert part.metadata["sex"].tolist() == [test.metadata["sex"][3], test.metadata["sex"][1]]


# --- experiments: [external] tables and [report] by -----------------------------------------------------------
def experiment_file(folder: Path, data: dict, external: str, report: str = "") -> Path:
    path = folder / "validation.toml"
    path.write_text(f"""[experiment]
name = "validation"

[defaults]
backbone = "timm/test_resnet"
weights = "none"
epochs = 1
batch_size = 32
image_size = 32
device = "cpu"

[target]
dataset = "csv"
data_root = "{data['a']}"

[grid]
strategies = ["full"]
fractions = [0.5, 1.0]  # two cells; one seed (Wilcoxon over one seed fails in scipy: one strategy, no pairs)

{external}
{report}
""")
    return path


EXTERNAL_B = """[external.b]
dataset = "csv"
data_root = "b/labels.csv"
data_options = { val_fraction = 0, test_fraction = 0, subgroups = "sex" }
class_map = { healthy = "normal", sick = "pneumonia" }
"""


def test_an_experiment_report_shows_internal_and_external_metrics_the_drop_and_subgroups(tmp_path, data):
    from txkit.experiments.report import build_report
    from txkit.experiments.runner import run_experiment
    from txkit.experiments.plan import Plan
    from rich.console import Console

    folder = data["a"].parent.parent  # data_root "b/labels.csv" is relative to the experiment file
    path = experiment_file(tmp_path, data, EXTERNAL_B,
                           "[report]\nby = [\"sex\"]\ndata_options = { subgroups = \"sex\" }\n")
    path = Path(path.rename(folder / f"validation-{tmp_path.name}.toml"))
    root, counts = run_experiment(path, tmp_path / "exp", console=Console(quiet=True))
    assert counts == {"done": 2}
    report = build_report(root)
    rows = report["external"]
    assert [r["fraction"] for r in rows] == [0.5, 1.0] and all("error" not in r for r in rows)
    cells = {c["fraction"]: c for c in report["cells"]}
    runs = {r.cell["fraction"]: root / r.directory for r in Plan.load(root).cells()}
    for row in rows:
        assert (row["external"], row["n_internal"], row["n_external"]) == ("b", 20, 20)
        assert row["internal_auc"] == pytest.approx(cells[row["fraction"]]["ci_auc"], abs=1e-12)
        assert (row["internal_auc_low"], row["internal_auc_high"]) == \
            (cells[row["fraction"]]["ci_auc_low"], cells[row["fraction"]]["ci_auc_high"])
        scored = evaluate_run(runs[row["fraction"]], dataset="csv", data_root=str(data["b"]),
                              data_options={**ALL_IN_TRAIN, "subgroups": "sex"},
                              class_map="healthy=normal,sick=pneumonia", bootstrap=0, device="cpu")
        assert row["external_auc"] == pytest.approx(scored["auc"], abs=1e-6)
        assert row["drop_auc"] == pytest.approx(row["internal_auc"] - row["external_auc"], abs=1e-12)
        assert row["drop_auc_low"] <= row["drop_auc_high"]
    assert len(list(runs[1.0].glob("predictions_external-*.npz"))) == 1  # stored for the next report
    subgroups = report["subgroups"]
    assert [(r["fraction"], r["data"], r["by"]) for r in subgroups] == [
        (0.5, "test", "sex"), (0.5, "b", "sex"), (1.0, "test", "sex"), (1.0, "b", "sex")]
    assert all(set(r["subgroups"]) == {"F", "M"} for r in subgroups)
    markdown = (root / "report" / "results.md").read_text()
    assert "## External validation" in markdown and "## Subgroups" in markdown and "AUC drop" in markdown
    assert (root / "report" / "external.csv").exists() and (root / "report" / "subgroups.csv").exists()


@pytest.mark.parametrize("external, words", [
    ("[external.b]\ndata_root = 'x.csv'\n", "[external.b]: dataset = \"NAME\" is required"),
    ("[external.b]\ndataset = 'csv'\nclass_map = 'healthy'\n", "[external.b]: class_map 'healthy'"),
    ("[external.b]\ndataset = 'csvv'\n", "[external.b]: dataset: no dataset named 'csvv'"),
    ("[external.b]\ndataset = 'csv'\nsplits = 'all'\n", "[external.b]: unknown field 'splits' (did you mean "
                                                         "'split'?)"),
    ("[report]\nby = 'sex'\ndata_options = 3\n", "[report] data_options: must be a table"),
])
def test_external_tables_in_an_experiment_file_are_checked_in_one_line(tmp_path, data, external, words):
    from txkit.experiments.spec import ExperimentFileError, load_experiment

    with pytest.raises(ExperimentFileError) as caught:
        load_experiment(experiment_file(tmp_path, data, external))
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("external, words", [
    ("[external.b]\ndataset = 'csv'\ndata_root = 'nowhere.csv'\n", ["[external.b]", "nowhere.csv does not exist",
                                                                      "--set external.b.data_root=PATH"]),
    ("[external.b]\ndataset = 'csv'\ndata_root = '{b}'\nclass_map = {{ healty = 'normal' }}\n",
     ["[external.b]", "class_map names 'healty'"]),
    ("[external.b]\ndataset = 'csv'\ndata_root = '{missing}'\n", ["[external.b]", "1 of 9 images not found"]),
])
def test_an_experiment_with_a_bad_external_dataset_stops_before_anything_trains(tmp_path, data, external, words):
    external = external.format(b=data["b"], missing=data["missing"])
    path = experiment_file(tmp_path, data, external)
    result = run_txkit("experiment", "run", str(path), "--out", str(tmp_path / "exp"))
    assert_one_line_error(result, *words)
    assert not (tmp_path / "exp" / "runs").exists()
