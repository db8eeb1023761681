"""Experiment grids through submitit: real subprocesses with --executor submitit-local, the Slurm path with
stand-ins for sbatch/squeue (no Slurm here), the options rendered into submitit's parameters and sbatch
lines, the [executor] table, `experiment status`, and GPU pinning for --jobs."""

import json
import os
import signal
import stat
import textwrap
import time

import pytest
from click.testing import CliRunner

from helpers import TINY_EXPERIMENT

from txkit.cli.experiment import experiment_group
from txkit.experiments import ExperimentFileError, load_experiment
from txkit.experiments.executors import (SLURM, SUBMITIT_LOCAL, TxkitError, _local_state, classify, gpu_slots,
                                         merge_options, submitit_parameters)
from txkit.experiments.plan import Plan
from txkit.experiments.state import ExperimentState, JobBook

submitit = pytest.importorskip("submitit")

# Runs of a few seconds, most of it the job's start: the suite's tiny experiment with a stage before its cells.
GRID = TINY_EXPERIMENT.read_text().replace('name = "tiny"', 'name = "tiny-grid"') + """
[stages.textures]
dataset = "synthetic-dld"
data_options = { per_class = 3, size = 16, seed = 5 }
strategy = "scratch"

[grid]
strategies = ["scratch", { name = "two-stage", strategy = "full", weights = "stage:textures" }]
"""


def write(tmp_path, text, name="grid.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def invoke(*args):
    return CliRunner().invoke(experiment_group, [str(a) for a in args], catch_exceptions=False)


def wait_for(condition, what, limit=120.0):
    """Poll a condition of other processes (never a timing assertion: the limit only ends a hung test)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------- submitit-local, for real

def test_grid_through_submitit_local_then_a_deleted_run_is_the_only_one_redone(tmp_path):
    path, root = write(tmp_path, GRID), tmp_path / "exp"
    result = invoke("run", path, "--out", root, "--executor", "submitit-local", "--jobs", "2", "--wait")
    assert result.exit_code == 0, result.output
    assert "3 done" in result.output
    plan, state, book = Plan.load(root), ExperimentState.load(root), JobBook(root)
    assert all(state.is_done(run.id) for run in plan.runs)
    jobs = {run.id: book.get(run.id) for run in plan.runs}
    assert all(job["executor"] == SUBMITIT_LOCAL for job in jobs.values())
    assert len({job["job_id"] for job in jobs.values()}) == 3
    assert all((root / "logs" / "submitit" / f"{job['job_id']}_0_log.out").exists() for job in jobs.values())
    stage = next(run for run in plan.runs if run.kind == "stage")
    two_stage = next(run for run in plan.cells() if run.needs)
    # the cell that reads the stage was submitted only once the stage had finished
    assert jobs[two_stage.id]["at"] > state.runs[stage.id]["at"]

    kept = {run.id: (root / run.directory / "model.safetensors").stat().st_mtime_ns for run in plan.runs}
    deleted = next(run for run in plan.cells() if not run.needs)
    for item in sorted((root / deleted.directory).iterdir()):
        item.unlink()
    (root / deleted.directory).rmdir()
    status = invoke("status", root)
    assert f"{deleted.id}" in status.output and "2 done, 1 pending" in status.output

    again = invoke("run", path, "--out", root, "--executor", "submitit-local", "--wait")
    assert again.exit_code == 0 and "2 of 3 runs already finished" in again.output
    book = JobBook(root)
    assert book.get(deleted.id)["job_id"] != jobs[deleted.id]["job_id"]
    assert all(book.get(run_id) == jobs[run_id] for run_id in jobs if run_id != deleted.id)
    assert all((root / run.directory / "model.safetensors").stat().st_mtime_ns == kept[run.id]
               for run in plan.runs if run.id != deleted.id)
    assert "3 done" in invoke("status", root).output


def test_a_run_whose_job_was_killed_is_failed_and_picked_up_again(tmp_path):
    from txkit.experiments.runner import run_experiment

    path = write(tmp_path, GRID.replace('strategies = ["scratch", ', 'strategies = [').replace(
        '{ name = "two-stage", strategy = "full", weights = "stage:textures" }]', '"scratch"]').replace(
        "epochs = 1", "epochs = 2"))
    root = tmp_path / "exp"
    run_experiment(path, root, executor=SUBMITIT_LOCAL, console=_quiet())  # returns once submitted
    (run,) = Plan.load(root).runs
    record = root / "task_states" / f"{run.id}.json"
    wait_for(lambda: record.exists() and json.loads(record.read_text())["status"] == "running", "the run to start")
    os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)  # the node dies under the run
    job_id = JobBook(root).get(run.id)["job_id"]
    wait_for(lambda: _local_state(job_id) == "ENDED", "the job to end")

    status = invoke("status", root)
    assert "1 failed" in status.output
    assert f"failed: {run.id}: job {job_id} ended before the run finished" in status.output
    assert f"--- {run.id}: last" in status.output  # the end of its log

    again = invoke("run", path, "--out", root, "--executor", "submitit-local", "--wait")
    assert again.exit_code == 0 and "1 done" in again.output
    assert JobBook(root).get(run.id)["job_id"] != job_id
    epochs = [json.loads(line)["epoch"] for line in (root / run.directory / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def _quiet():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), width=200)


# ----------------------------------------------------------------------- the Slurm path, without Slurm

def fake_slurm(tmp_path, monkeypatch):
    """srun (so submitit sees a cluster), sbatch answering with job ids 100, 101, ... and recording each
    submission file, squeue printing tmp_path/queue; no sacct."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "srun": "exit 0",
        "sbatch": f'n=$(ls {tmp_path}/submitted | wc -l); cp "$1" {tmp_path}/submitted/$n.sh; '
                  f'echo "Submitted batch job $((100 + n))"',
        "squeue": f"cat {tmp_path}/queue",
    }
    for name, body in scripts.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "submitted").mkdir()
    (tmp_path / "queue").write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "submitted"


def test_slurm_submits_stage_then_cells_with_a_dependency_and_never_twice(tmp_path, monkeypatch):
    submitted = fake_slurm(tmp_path, monkeypatch)
    path = write(tmp_path, GRID + '\n[executor]\npartition = "gpu"\ntime = "2:00:00"\n')
    root = tmp_path / "exp"
    result = invoke("run", path, "--out", root, "--executor", "slurm", "--slurm-partition", "a100",
                    "--slurm-gpus-per-task", "1", "--slurm-array-parallelism", "4")
    assert result.exit_code == 0, result.output
    assert "3 queued; follow with: txkit experiment status" in result.output
    first, second = (submitted / "0.sh").read_text(), (submitted / "1.sh").read_text()
    assert "#SBATCH --partition=a100" in first and "#SBATCH --time=120" in first  # the option wins over the file
    assert "#SBATCH --array=0-1%2" in first and "#SBATCH --gpus-per-node=1" in first
    assert "#SBATCH --dependency=afterany:100_1" in second and "--array" not in second
    assert f"--output={root}/logs/submitit/%A_%a_0_log.out" in first
    plan, book = Plan.load(root), JobBook(root)
    ids = {run.id: book.get(run.id)["job_id"] for run in plan.runs}
    stage = next(run for run in plan.runs if run.kind == "stage")
    assert ids[stage.id] == "100_1" and sorted(ids.values()) == ["100_0", "100_1", "101"]

    (tmp_path / "queue").write_text("100_0|RUNNING\n100_1|PENDING\n101|PENDING\n")
    again = invoke("run", path, "--out", root, "--executor", "slurm")
    assert "3 runs are still queued or running in their jobs; not submitted again" in again.output
    assert len(list(submitted.iterdir())) == 2
    assert "1 running, 2 queued" in invoke("status", root).output
    local = invoke("run", path, "--out", root)  # nor does a local run train them meanwhile
    assert "3 runs are still queued or running in submitit jobs; left to them" in local.output

    (tmp_path / "queue").write_text("")  # the jobs are gone without a word from the runs: e.g. cancelled
    status = invoke("status", root)
    assert "3 failed" in status.output and "job 100_1 ended before the run finished" in status.output


# ------------------------------------------------------------------------- options and their rendering

def test_slurm_options_render_into_parameters_submitit_accepts(tmp_path, monkeypatch):
    fake_slurm(tmp_path, monkeypatch)
    options = merge_options({"partition": "gpu", "time": 60, "account": "lab"},
                            {"partition": "a100", "time": 90, "gpus_per_task": 1, "cpus_per_task": 8,
                             "array_parallelism": 4, "account": None})
    params = submitit_parameters(SLURM, options, "txkit-x", ["11_0", "12"])
    assert params == {"name": "txkit-x", "nodes": 1, "tasks_per_node": 1, "stderr_to_stdout": True,
                      "timeout_min": 90, "gpus_per_node": 1, "cpus_per_task": 8, "slurm_partition": "a100",
                      "slurm_account": "lab", "slurm_array_parallelism": 4,
                      "slurm_dependency": "afterany:11_0:12"}
    executor = submitit.AutoExecutor(folder=tmp_path / "logs", cluster="slurm")
    executor.update_parameters(**params)  # submitit's own check of every parameter
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="CMD", folder=tmp_path / "logs", map_count=10, **executor._executor.parameters)
    for line in ("--partition=a100", "--account=lab", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8",
                 "--ntasks-per-node=1", "--array=0-9%4", "--dependency=afterany:11_0:12", "--job-name=txkit-x"):
        assert f"#SBATCH {line}" in text
    assert "#SBATCH --error" not in text  # one log per task

    local = submitit_parameters(SUBMITIT_LOCAL, {"partition": "gpu"}, "txkit-x")
    assert local["timeout_min"] == 7 * 24 * 60 and not any(k.startswith("slurm_") for k in local)
    with pytest.raises(TxkitError, match="--executor slurm needs a time limit per run: --slurm-time"):
        submitit_parameters(SLURM, {"partition": "gpu"}, "txkit-x")


@pytest.mark.parametrize("table, message", [
    ('partiton = "gpu"', "[executor]: unknown field 'partiton' (did you mean 'partition'?)"),
    ('time = "1h"', "[executor] time: must be minutes or HH:MM:SS"),
    ("time = 0", "[executor] time: must be minutes or HH:MM:SS"),
    ("gpus_per_task = -1", "[executor] gpus_per_task: must be an integer of at least 0, got -1"),
    ("array_parallelism = 0", "[executor] array_parallelism: must be an integer of at least 1, got 0"),
    ("cpus_per_task = 2.5", "[executor] cpus_per_task: must be an integer of at least 1, got 2.5"),
    ("partition = 3", "[executor] partition: must be a non-empty string, got 3"),
])
def test_executor_table_errors_are_one_line(tmp_path, table, message):
    path = write(tmp_path, GRID + f"\n[executor]\n{table}\n")
    with pytest.raises(ExperimentFileError) as caught:
        load_experiment(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_executor_table_and_time_forms(tmp_path):
    path = write(tmp_path, GRID + '\n[executor]\npartition = "gpu"\ntime = "1-12:00:00"\ngpus_per_task = 0\n')
    assert load_experiment(path).executor == {"partition": "gpu", "time": 2160, "gpus_per_task": 0}
    assert load_experiment(path, {"executor.time": "1:30"}).executor["time"] == 2  # Slurm's MM:SS
    assert load_experiment(path, {"executor.time": "90"}).executor["time"] == 90


@pytest.mark.parametrize("args, message", [
    (["--slurm-time", "soon", "--executor", "slurm"], "Invalid value for --slurm-time: must be minutes or HH:MM:SS"),
    (["--slurm-partition", "gpu"], "--slurm-partition applies to --executor slurm or submitit-local"),
    (["--executor", "slurm", "--jobs", "2"], "on Slurm use --slurm-array-parallelism"),
])
def test_cli_refuses_misused_executor_options(tmp_path, args, message):
    result = invoke("run", write(tmp_path, GRID), *args)
    assert result.exit_code == 2 and message in result.output


def test_slurm_without_time_limit_is_refused_before_submitting(tmp_path, monkeypatch):
    submitted = fake_slurm(tmp_path, monkeypatch)
    result = invoke("run", write(tmp_path, GRID), "--out", tmp_path / "exp", "--executor", "slurm")
    assert result.exit_code == 1 and "needs a time limit per run: --slurm-time MINUTES" in result.output
    assert not list(submitted.iterdir())


def test_slurm_off_a_cluster_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    result = invoke("run", write(tmp_path, GRID), "--out", tmp_path / "exp", "--executor", "slurm", "--slurm-time", "10")
    assert result.exit_code == 1
    assert 'Could not detect "srun"' in result.output and "use --executor submitit-local" in result.output


# ------------------------------------------------------------------------------------ pure decisions

def test_gpu_slots_round_robin_over_visible_gpus():
    assert gpu_slots(4, None, 2) == ["0", "1", "0", "1"]
    assert gpu_slots(3, "2,5", 0) == ["2", "5", "2"]  # the parent's own list, whatever torch counts
    assert gpu_slots(2, "GPU-a1b2, GPU-c3d4", 0) == ["GPU-a1b2", "GPU-c3d4"]
    assert gpu_slots(2, None, 0) == [None, None]  # no GPU: nothing pinned
    assert gpu_slots(2, "", 8) == [None, None]  # GPUs hidden from the parent stay hidden


def test_classify_reads_state_and_job_together():
    job = {"job_id": "7_1", "folder": "/x"}
    assert classify({"status": "queued"}, job, "PENDING", False) == ("queued", None)
    assert classify({"status": "running"}, job, "RUNNING", False) == ("running", None)
    status, error = classify({"status": "running"}, job, "TIMEOUT", False)
    assert status == "failed" and error.startswith("job 7_1 ended (timeout) before the run finished")
    assert classify({"status": "running"}, job, "UNKNOWN", False)[0] == "running"  # no word: not resubmitted
    assert classify({"status": "done"}, job, "COMPLETED", True) == ("done", None)
    assert classify({"status": "done"}, job, "COMPLETED", False) == ("pending", None)  # its directory was deleted
    assert classify({"status": "failed", "error": "bad"}, job, "FAILED", False) == ("failed", "bad")
    assert classify(None, None, None, False) == ("pending", None)


def test_status_of_a_local_experiment_shows_failed_runs_and_the_end_of_a_log(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not an npz archive")  # fails as it loads: nothing trains
    path = write(tmp_path, GRID.split("[stages.textures]")[0] + """
        [stages.broken]
        dataset = "medmnist"
        data_root = "broken.npz"
        data_options = {}

        [grid]
        strategies = [{ name = "after-broken", strategy = "full", weights = "stage:broken" }]
    """)
    assert invoke("run", path, "--out", tmp_path / "exp").exit_code == 1
    stage, cell = Plan.load(tmp_path / "exp").runs
    status = invoke("status", tmp_path / "exp")
    assert status.exit_code == 0 and "2 failed" in status.output
    assert f"failed: {cell.id}: needs stage run {stage.id}, which failed" in status.output
    log = tmp_path / "exp" / "logs" / f"{stage.id}.log"
    assert f"--- {stage.id}: last 20 lines of {log} ---" in status.output
    assert log.read_text().splitlines()[-1] in status.output  # the end of its traceback
    assert "broken.npz" in json.loads(invoke("status", tmp_path / "exp", "--json").output)["runs"][0]["error"]
    assert "(the log is empty or missing)" in invoke("status", tmp_path / "exp", "--log", cell.id).output


def test_status_of_a_directory_that_is_no_experiment(tmp_path):
    result = invoke("status", tmp_path)
    assert result.exit_code == 1 and "not an experiment directory" in result.output
