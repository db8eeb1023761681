"""Experiments on tiny synthetic configs: grid expansion, shared stages, continuing after an interruption,
failures, parallel runs, and report numbers checked against the run directories and scipy."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console
from scipy.stats import linregress, wilcoxon

import helpers
from txkit.cli.experiment import experiment_group
from txkit.experiments import ExperimentFileError, load_experiment
from txkit.experiments.plan import Plan, expand
from txkit.experiments.report import build_report
from txkit.experiments.runner import ExperimentInterrupted, run_experiment
from txkit.experiments.state import ExperimentState
from txkit.training import session
from txkit.training.engine import Trainer

def write_experiment(folder, body, file="tiny.toml"):
    """The suite's tiny experiment with runs of two epochs (the interruption tests stop between them)."""
    return helpers.write_experiment(folder, body, file=file, epochs=2)


def quiet():
    return Console(file=io.StringIO(), width=200)


@pytest.fixture
def counted(monkeypatch):
    """Counts of session.train and session.resume calls (the runner goes through the module attributes)."""
    calls = {"train": [], "resume": []}
    train, resume = session.train, session.resume

    def counting_train(cfg, out=None, console=None):
        calls["train"].append(str(out))
        return train(cfg, out, console)

    def counting_resume(run_dir, console=None):
        calls["resume"].append(str(run_dir))
        return resume(run_dir, console)
    monkeypatch.setattr(session, "train", counting_train)
    monkeypatch.setattr(session, "resume", counting_resume)
    return calls


# ------------------------------------------------------------------------------------- file and grid

def test_grid_crosses_axes_and_entries_fix_their_own(tmp_path):
    path = write_experiment(tmp_path, """
        [grid]
        strategies = ["full", { name = "mode1", strategy = "colorizer", colorizer = "conv1x1", lr = 0.002 }]
        colorizers = ["none", "pixelshuffle"]
        seeds = [0, 1]
        fractions = [0.5, 1.0]
    """)
    plan = expand(load_experiment(path), tmp_path / "exp")
    cells = plan.cells()
    assert len(cells) == 2 * 2 * 2 + 1 * 2 * 2  # full × 2 colorizers, mode1 with its own colorizer only
    assert len({c.id for c in cells}) == len(cells)
    full = [c for c in cells if c.cell["strategy"] == "full"]
    assert {(c.config["colorizer"], c.config["fraction"], c.config["seed"]) for c in full} == {
        (col, r, s) for col in (None, "pixelshuffle") for r in (0.5, 1.0) for s in (0, 1)}
    mode1 = [c for c in cells if c.cell["strategy"] == "mode1"]
    assert all(c.config["colorizer"] == "conv1x1" and c.config["lr"] == 0.002 for c in mode1)
    assert all(c.cell["fixed"] == ["colorizer"] for c in mode1)
    assert all(c.config["epochs"] == 2 and c.config["dataset"] == "synthetic-dld" for c in cells)


def test_stage_chain_is_shared_and_keyed_by_config(tmp_path):
    path = write_experiment(tmp_path, """
        [stages.natural]
        dataset = "synthetic-dld"
        data_options = { per_class = 3, size = 16, seed = 9 }
        strategy = "scratch"

        [stages.textures]
        dataset = "synthetic-dld"
        data_options = { per_class = 3, size = 16, seed = 5 }
        weights = "stage:natural"

        [grid]
        strategies = ["scratch", { name = "two-stage", strategy = "full", weights = "stage:textures" }]
        seeds = [0, 1]
    """)
    plan = expand(load_experiment(path), tmp_path / "exp")
    stages = [r for r in plan.runs if r.kind == "stage"]
    assert [s.id.split("-")[0] for s in stages] == ["natural", "textures"]
    natural, textures = stages
    assert textures.needs == [natural.id] and textures.config["weights"] == str(tmp_path / "exp" / natural.directory)
    two_stage = [c for c in plan.cells() if c.cell["strategy"] == "two-stage"]
    assert all(c.needs == [textures.id] for c in two_stage)
    assert all(c.needs == [] for c in plan.cells() if c.cell["strategy"] == "scratch")
    index = {r.id: i for i, r in enumerate(plan.runs)}
    assert all(index[need] < index[run.id] for run in plan.runs for need in run.needs)

    per_seed = path.read_text().replace('weights = "stage:natural"', 'weights = "stage:natural"\nper_seed = true')
    path.write_text(per_seed)
    plan_per_seed = expand(load_experiment(path), tmp_path / "exp")
    assert len([r for r in plan_per_seed.runs if r.id.startswith("textures")]) == 2
    assert [r.id for r in plan_per_seed.runs if r.id.startswith("natural")] == [natural.id]


def test_editing_the_target_changes_cell_keys_not_stage_keys(tmp_path):
    body = """
        [stages.textures]
        dataset = "synthetic-dld"
        [grid]
        strategies = [{ name = "two-stage", strategy = "full", weights = "stage:textures" }]
    """
    before = expand(load_experiment(write_experiment(tmp_path, body)), tmp_path / "exp")
    again = expand(load_experiment(write_experiment(tmp_path, body)), tmp_path / "exp")
    edited = write_experiment(tmp_path, body, file="edited.toml")
    edited.write_text(edited.read_text().replace('[target]\n', '[target]\nlr = 0.5\n'))
    changed = expand(load_experiment(edited), tmp_path / "exp")
    assert [r.id for r in before.runs] == [r.id for r in again.runs]
    assert changed.runs[0].id == before.runs[0].id and changed.runs[1].id != before.runs[1].id
    assert changed.runs[1].config["lr"] == 0.5


@pytest.mark.parametrize("body, message", [
    ("[grid]\nstrategies = ['full']\n[gird]\n", "top level: unknown table 'gird' (did you mean 'grid'?)"),
    ("[grid]\nstrategies = ['full']\nfractions = [1.5]\n", "[grid] fractions: 1.5 is outside (0, 1]"),
    ("[grid]\nseeds = [0]\n", "[grid]: strategies is required"),
    ("[grid]\nstrategies = ['ful']\n", "strategy: no strategy named 'ful'; did you mean 'full'?"),
    ("[grid]\nstrategies = ['full']\n[stages.x]\nepoch = 3\n", "[stages.x]: unknown field 'epoch' (did you mean "
                                                                 "'epochs'?)"),
    ("[grid]\nstrategies = ['full']\n[stages.x]\nepochs = '3'\n", "[stages.x]: epochs must be a valid integer (got '3')"),
    ("[grid]\nstrategies = [{ strategy = 'full', weights = 'stage:nope' }]\n",
     "weights = \"stage:nope\" names no stage"),
    ("[grid]\nstrategies = ['full']\n[stages.a]\nweights = 'stage:b'\n[stages.b]\nweights = 'stage:a'\n",
     "stages feed each other in a circle: a -> b -> a"),
    ("[grid]\nstrategies = ['colorizer']\n", "strategy 'colorizer' needs a colorizer"),
    ("[grid]\nstrategies = ['full']\n[stages.x]\nbackbone = 'resnet50'\n", "a stage takes the backbone of the cell"),
    ("[grid]\nstrategies = ['full']\n[report]\ncompare = [['full']]\n", "[report] compare: each pair is two names"),
    ("[grid]\nstrategies = ['full'\n", "not valid TOML"),
])
def test_file_errors_name_the_file_and_field_in_one_line(tmp_path, body, message):
    path = write_experiment(tmp_path, body, file="bad.toml")
    with pytest.raises(ExperimentFileError) as caught:
        load_experiment(path)
    text = str(caught.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_set_overrides_fields_of_the_file(tmp_path, monkeypatch):
    path = write_experiment(tmp_path, "[grid]\nstrategies = ['full']\n")
    monkeypatch.chdir(tmp_path)
    experiment = load_experiment(path, {"target.data_root": "data/x.npz", "target.dataset": "medmnist",
                                        "target.data_options": "{}", "grid.seeds": "[0, 1, 2]",
                                        "defaults.epochs": "5", "report.roc": "false"})
    assert experiment.target == {"dataset": "medmnist", "data_root": str(tmp_path / "data" / "x.npz"),
                                 "data_options": {}}
    assert experiment.seeds == [0, 1, 2] and experiment.defaults["epochs"] == 5 and not experiment.report.roc
    with pytest.raises(ExperimentFileError, match=r"--set seeds=1: name a table and a field"):
        load_experiment(path, {"seeds": "1"})
    with pytest.raises(ExperimentFileError, match=r"\[grid\] seeds: must be a non-empty list, got '\[zero\]'"):
        load_experiment(path, {"grid.seeds": "[zero]"})


def test_cli_rejects_a_set_option_without_value(tmp_path):
    path = write_experiment(tmp_path, "[grid]\nstrategies = ['full']\n")
    result = CliRunner().invoke(experiment_group, ["run", str(path), "--set", "grid.seeds"])
    assert result.exit_code == 2 and "expected TABLE.FIELD=VALUE" in result.output


def test_target_may_not_set_an_axis(tmp_path):
    path = write_experiment(tmp_path, "[grid]\nstrategies = ['full']\n", file="bad.toml")
    path.write_text(path.read_text().replace("[target]", "[target]\nseed = 3"))
    with pytest.raises(ExperimentFileError, match=r"\[target\]: seed is a grid axis: set \[grid\] seeds instead"):
        load_experiment(path)


def test_cli_module_does_not_import_torch():
    code = "import sys, txkit.cli.experiment as m; assert m.COMMANDS; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------- running

SHARED_STAGE = """
[stages.textures]
dataset = "synthetic-dld"
data_options = { per_class = 3, size = 16, seed = 5 }
strategy = "scratch"

[grid]
strategies = ["scratch", { name = "two-stage", strategy = "full", weights = "stage:textures" }]
seeds = [0, 1]
fractions = [0.5, 1.0]

[report]
compare = [["two-stage", "scratch"]]
plateau = 1.0
"""


def test_shared_stage_trains_once_and_report_matches_run_directories(tmp_path, counted):
    path = write_experiment(tmp_path, SHARED_STAGE)
    root, counts = run_experiment(path, tmp_path / "exp", console=quiet())
    assert counts == {"done": 9}
    assert len(counted["train"]) == 9 and len(list((root / "stages").iterdir())) == 1
    plan = Plan.load(root)
    kept = {run.cell["fraction"] for run in plan.cells() if (root / run.directory / "probabilities_test.npz").exists()}
    assert kept == {1.0}  # predicted for the ROC plot, at the largest fraction only

    report = build_report(root)
    summaries, curves = {}, {}
    for run in plan.cells():
        summaries[run.id] = json.loads((root / run.directory / "summary.json").read_text())["test"]
        lines = (root / run.directory / "metrics.jsonl").read_text().splitlines()
        curves[run.id] = [json.loads(line) for line in lines]
    by_cell = {}
    for run in plan.cells():
        by_cell.setdefault((run.cell["strategy"], run.cell["fraction"]), []).append(run)
    assert len(report["cells"]) == 4
    for row in report["cells"]:
        runs = by_cell[(row["strategy"], row["fraction"])]
        for metric in ("accuracy", "f1", "auc"):
            values = [summaries[r.id][metric] for r in runs]
            assert row[f"test_{metric}_mean"] == pytest.approx(np.mean(values))
            assert row[f"test_{metric}_std"] == pytest.approx(np.std(values, ddof=1))
        plateau = [np.percentile([line["val_loss"] for line in curves[r.id]], 75) for r in runs]  # plateau = all
        assert row["plateau_loss_mean"] == pytest.approx(np.mean(plateau))

    # The report's Wilcoxon p and slopes are checked against scipy on the same runs' numbers, whatever they
    # are, never against a trained value: this holds on any CPU.
    def accuracies(strategy, fraction):
        return [summaries[r.id]["accuracy"] for r in sorted(by_cell[(strategy, fraction)], key=lambda r: r.seed)]
    for test in (t for t in report["wilcoxon"] if t["metric"] == "accuracy"):
        a, b = accuracies("two-stage", test["fraction"]), accuracies("scratch", test["fraction"])
        assert test["n"] == 2 and test["p"] == pytest.approx(wilcoxon(a, b).pvalue)
    assert len([t for t in report["wilcoxon"] if t["metric"] == "accuracy"]) == 2

    slope = next(s for s in report["slopes"] if s["strategy"] == "two-stage" and s["metric"] == "test_accuracy")
    runs = [r for r in plan.cells() if r.cell["strategy"] == "two-stage"]
    fit = linregress([r.cell["fraction"] for r in runs], [summaries[r.id]["accuracy"] for r in runs])
    assert (slope["A"], slope["b"]) == (pytest.approx(fit.slope), pytest.approx(fit.intercept))

    out = root / "report"
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 4
    assert {"metric_vs_fraction.png", "roc_r1.png", "learning_curves_r0.5.png"} <= {p.name for p in out.iterdir()}
    assert "| two-stage | 0.5 | 2 |" in (out / "results.md").read_text()

    counted["train"].clear()
    assert run_experiment(path, root, console=quiet())[1] == {"done": 9}
    assert counted["train"] == [] and counted["resume"] == []


def test_interrupted_experiment_continues_without_redoing_finished_runs(tmp_path, counted, monkeypatch):
    path = write_experiment(tmp_path, "[grid]\nstrategies = ['full']\nseeds = [0, 1, 2]\n")
    original = Trainer.train_epoch

    def interrupted_second_run(self, epoch, progress, task):
        if self.cfg.seed == 1 and epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, progress, task)
    monkeypatch.setattr(Trainer, "train_epoch", interrupted_second_run)
    with pytest.raises(ExperimentInterrupted, match="again to continue"):
        run_experiment(path, tmp_path / "exp", console=quiet())
    state = ExperimentState.load(tmp_path / "exp")
    plan = Plan.load(tmp_path / "exp")
    first, second, third = plan.cells()
    assert [state.status(r.id) for r in (first, second, third)] == ["done", "interrupted", None]
    first_weights = (tmp_path / "exp" / first.directory / "model.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(Trainer, "train_epoch", original)
    counted["train"].clear()
    _, counts = run_experiment(path, tmp_path / "exp", console=quiet())
    assert counts == {"done": 3}
    assert counted["resume"] == [str(tmp_path / "exp" / second.directory)]
    assert counted["train"] == [str(tmp_path / "exp" / third.directory)]
    assert (tmp_path / "exp" / first.directory / "model.safetensors").stat().st_mtime_ns == first_weights
    lines = (tmp_path / "exp" / second.directory / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_failed_runs_are_recorded_and_the_rest_finish(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not an npz archive")  # a missing data_root fails before any run
    path = write_experiment(tmp_path, """
        [stages.broken]
        dataset = "medmnist"
        data_root = "broken.npz"
        data_options = {}

        [grid]
        strategies = ["full", "finetune-from:layer9",
                      { name = "after-broken", strategy = "full", weights = "stage:broken" }]
    """)
    result = CliRunner().invoke(experiment_group, ["run", str(path), "--out", str(tmp_path / "exp")])
    assert result.exit_code == 1
    assert "3 of 4 runs failed" in result.output and "; 1 finished;" in result.output
    state = ExperimentState.load(tmp_path / "exp")
    plan = Plan.load(tmp_path / "exp")
    by_name = {(run.cell["strategy"] if run.cell else run.id.split("-")[0]): state.runs[run.id] for run in plan.runs}
    assert by_name["full"]["status"] == "done"
    assert "no stage 'layer9'" in by_name["finetune-from:layer9"]["error"]
    assert "broken.npz" in by_name["broken"]["error"]
    assert by_name["after-broken"]["error"].startswith("needs stage run broken-")
    assert all("/" not in run.directory.split("/", 1)[1] for run in plan.runs)

    result = CliRunner().invoke(experiment_group, ["report", str(tmp_path / "exp"), "--json"])
    report = json.loads(result.output)
    assert report["runs"]["done"] == 1 and report["runs"]["failed"] == 2 and len(report["failed"]) == 3
    assert "## Failed runs" in (tmp_path / "exp" / "report" / "results.md").read_text()


def test_parallel_jobs_run_every_cell(tmp_path):
    path = write_experiment(tmp_path, "[grid]\nstrategies = ['full', 'scratch']\n")
    root, counts = run_experiment(path, tmp_path / "exp", jobs=2, console=quiet())
    assert counts == {"done": 2}
    assert all((root / run.directory / "summary.json").exists() for run in Plan.load(root).cells())


def test_report_of_a_directory_that_is_no_experiment(tmp_path):
    result = CliRunner().invoke(experiment_group, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "not an experiment directory" in result.output
