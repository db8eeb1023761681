"""A run that stops resumes exactly or says why in one line: a kill between an epoch's metrics line and its
checkpoint (end to end; the protocol itself: test_commit_protocol.py), full disks, non-finite values, bad
options, failed starts and the CLI's safety net."""

import errno
import json
import os

import numpy as np
import pytest
import torch

from faults import assert_one_line_error, tree_hashes
from helpers import image_folders, make_distribution, pythonpath, run_txkit, tiny_config

from txkit.config import TrainConfig
from txkit.errors import DataError, TxkitError
from txkit.training import checkpoint as ckpt
from txkit.training import commit
from txkit.training import session
from txkit.data.loader import train_batches
from txkit.training.engine import Trainer
from txkit import storage

TINY = ["--dataset", "synthetic-dld", "--data-option", "per_class=6", "--data-option", "size=32",
        "--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--batch-size", "16", "--device", "cpu"]


def metric_epochs(run_dir):
    return [line["epoch"] for line in storage.read_jsonl(run_dir / "metrics.jsonl")]


def metric_lines(run_dir):
    lines = storage.read_jsonl(run_dir / "metrics.jsonl")
    for line in lines:
        line.pop("seconds")
    return lines


def same_tensors(a, b) -> bool:
    ta, tb = ckpt.load_tensors(a), ckpt.load_tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.fixture(scope="module")
def straight_run(module_tmp):
    """``tiny_config(epochs=3)`` trained without faults, once: what every faulty run of it must resume into."""
    cfg = tiny_config(epochs=3)
    run_dir, _ = session.train(cfg, module_tmp("straight") / "run")
    return cfg, run_dir


@pytest.fixture
def broken_copy(interrupted_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(interrupted_run, copy)
    return copy


# --- 2. small batches and batch-norm ----------------------------------------------------------------------

def test_a_last_batch_of_one_joins_the_previous_batch():
    assert [len(b) for b in train_batches(12, 11)] == [12]
    assert [len(b) for b in train_batches(33, 16)] == [16, 17]
    assert [len(b) for b in train_batches(34, 16)] == [16, 16, 2]
    assert sorted(i for b in train_batches(23, 11) for i in b) == list(range(23))
    assert train_batches(1, 4) == [[0]]


def test_batch_norm_trains_when_the_split_leaves_one_image_over(tmp_path, tiny_cfg):
    probe = Trainer(tiny_cfg())
    n = len(probe.train_data)
    run_dir, summary = session.train(tiny_cfg(epochs=1, batch_size=n - 1), tmp_path / "run")
    assert summary["status"] == "completed" and summary["train_images"] == n


def test_batch_size_one_with_a_1x1_batch_norm_map_is_one_line(tmp_path):
    result = run_txkit("train", *TINY, "--batch-size", "1", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--batch-size", "batch-norm")


def test_an_image_size_the_network_shrinks_to_nothing_is_one_line_before_a_run_exists(tmp_path):
    result = run_txkit("train", "--data-option", "per_class=4", "--backbone", "cxrnet", "--weights", "none",
                       "--image-size", "32", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--image-size 32 is too small for backbone cxrnet", "--image-size 40 or more")
    assert not (tmp_path / "run").exists()


# --- 3. non-finite values -----------------------------------------------------------------------------------

def test_huge_learning_rate_stops_with_non_finite_status(tmp_path):
    result = run_txkit("train", *TINY, "--lr", "1e6", "--epochs", "2", "--out", str(tmp_path / "run"))
    line = assert_one_line_error(result, "non-finite" if "non-finite" in result.stderr else "became", "--lr")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "non-finite-loss"
    claims_checkpoint = "last good checkpoint" in line
    assert claims_checkpoint == (tmp_path / "run" / "checkpoint.json").exists()


def test_non_finite_validation_predictions_stop_and_keep_the_last_good_epoch(tmp_path, tiny_cfg, monkeypatch):
    original = Trainer.predict

    def predict(self, data):
        logits, labels = original(self, data)
        return (logits * float("nan"), labels) if self.state.epoch >= 1 else (logits, labels)
    monkeypatch.setattr(Trainer, "predict", predict)
    with pytest.raises(TxkitError, match=r"validation predictions became non-finite at epoch 2; .*checkpoint "
                                         r"\(epoch 1\)"):
        session.train(tiny_cfg(epochs=3), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "non-finite-loss"
    assert metric_epochs(tmp_path / "run") == [1]
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["loop"]["epoch"] == 1


def test_non_finite_in_the_first_epoch_says_there_is_no_checkpoint(tmp_path, tiny_cfg, monkeypatch):
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", lambda self, logits, y: logits.sum() * float("inf"))
    with pytest.raises(TxkitError, match="no epoch had finished, so the run has no checkpoint") as info:
        session.train(tiny_cfg(epochs=2), tmp_path / "run")
    assert "last good checkpoint" not in str(info.value)


def test_a_run_stopped_on_non_finite_values_is_not_resumed_into_the_same_failure(tmp_path):
    run_txkit("train", *TINY, "--lr", "1e6", "--epochs", "2", "--out", str(tmp_path / "run"))
    result = run_txkit("train", "--resume", str(tmp_path / "run"))
    assert_one_line_error(result, str(tmp_path / "run"), "--lr")


# --- 4. damaged run files on --resume and for evaluate/predict ------------------------------------------

@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "incomplete"])
def test_damaged_checkpoint_json_on_resume_is_one_line(broken_copy, damage):
    path = broken_copy / "checkpoint.json"
    text = path.read_bytes()
    path.write_bytes({"random-bytes": os.urandom(300), "truncated": text[: len(text) // 2],
                      "incomplete": b'{"loop": {"epoch": 1}}'}[damage])
    before = tree_hashes(broken_copy)
    result = run_txkit("train", "--resume", str(broken_copy))
    assert_one_line_error(result, "checkpoint.json")
    assert tree_hashes(broken_copy) == before


@pytest.mark.parametrize("damage", ["missing", "truncated", "random-bytes"])
def test_damaged_checkpoint_tensors_on_resume_is_one_line(broken_copy, damage):
    path = broken_copy / "checkpoint.safetensors"
    if damage == "missing":
        path.unlink()
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(len(data)))
    result = run_txkit("train", "--resume", str(broken_copy))
    assert_one_line_error(result, "checkpoint.safetensors")


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("damage", [b"\x00\xff garbage", b'{"config": {"backbone": "resnet18"', b'{"x": 1}'])
def test_damaged_config_json_is_one_line(broken_copy, command, damage, tmp_path):
    (broken_copy / "config.json").write_bytes(damage)
    args = [str(tmp_path / "x.png")] if command == "predict" else []
    result = run_txkit(command, str(broken_copy), *args)
    assert_one_line_error(result, "config.json")


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = run_txkit("evaluate", str(tmp_path))
    assert_one_line_error(result, "config.json", "not a txkit run directory")


# --- 5. full disks and crashes inside an epoch's commit -------------------------------------------------
# Every point of the commit protocol is tested without training in test_commit_protocol.py; here, once, the
# Trainer and the session around it.

class HardCrash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler sees it."""


def test_a_kill_inside_an_epochs_commit_resumes_into_the_uninterrupted_run(tmp_path, straight_run, monkeypatch):
    """Killed after epoch 1's checkpoint.json (committed) and before its rename and best weights: the resume
    completes the rename, rewrites the best weights from the restored network and trains on, bit for bit."""
    cfg, straight = straight_run
    real_replace = os.replace

    def replace(src, dst):
        if str(src).endswith(".pending"):
            raise HardCrash
        return real_replace(src, dst)
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", replace)
        with pytest.raises(HardCrash):
            session.train(cfg, tmp_path / "broken")
    broken = tmp_path / "broken"
    assert (broken / "checkpoint.safetensors.pending").exists() and not (broken / "model.safetensors").exists()
    epoch1 = {k[6:]: v for k, v in ckpt.load_tensors(broken / "checkpoint.safetensors.pending").items()
              if k.startswith("model.")}
    real_repair, repaired = commit.repair, []

    def repair(run_dir, *args, **kwargs):  # what the resume's repair left, before training goes on
        real_repair(run_dir, *args, **kwargs)
        best = run_dir / "model.safetensors"
        repaired.append((ckpt.tensor_metadata(best), ckpt.load_tensors(best)))
    monkeypatch.setattr(commit, "repair", repair)
    resumed, summary = session.resume(str(broken))
    (metadata, best), = repaired
    assert metadata == {"epoch": "1"} and best.keys() == epoch1.keys()
    assert all(torch.equal(best[k], epoch1[k]) for k in best)
    assert summary["status"] == "completed" and metric_epochs(resumed) == [1, 2, 3]
    assert metric_lines(resumed) == metric_lines(straight)
    assert same_tensors(straight / "model.safetensors", resumed / "model.safetensors")
    assert same_tensors(straight / "checkpoint.safetensors", resumed / "checkpoint.safetensors")
    assert not [p.name for p in resumed.iterdir() if p.name.endswith((".tmp", ".pending"))]


def test_a_full_disk_mid_run_is_one_line_naming_the_last_good_epoch_and_the_resume_command(tmp_path, tiny_cfg,
                                                                                          monkeypatch):
    real_write_json = storage.write_json

    def write_json(path, obj):
        if os.path.basename(path) == "checkpoint.json" and obj["loop"]["epoch"] == 2:
            with storage.writing(path):
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_json(path, obj)
    monkeypatch.setattr(storage, "write_json", write_json)
    with pytest.raises(TxkitError, match=r"checkpoint\.json: cannot write \(No space left on device; free space in "
                                         r".*, .* is free\); the last good checkpoint \(epoch 1\) is intact: "
                                         r".*txkit train --resume"):
        session.train(tiny_cfg(epochs=2), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs_run"] == 1


# --- 6. the run directory --------------------------------------------------------------------------------

def test_out_naming_an_existing_file_is_one_line(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = run_txkit("train", *TINY, "--epochs", "1", "--out", str(target))
    assert_one_line_error(result, "--out", str(target))
    assert target.read_text() == "mine"


def test_out_naming_a_non_empty_folder_is_one_line(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.csv").write_text("x")
    result = run_txkit("train", *TINY, "--epochs", "1", "--out", str(tmp_path / "data"))
    assert_one_line_error(result, "--out", "not empty")


@pytest.mark.parametrize("args, names", [
    (["--weights", "imagenet"], ["resnet18"]),
    (["--device", "cuda"], ["--device"]),
    (["--colorizer", "deconv", "--colorizer-option", "nonsense=3"], ["nonsense"]),
    (["--strategy", "finetune-from:layer9"], ["layer9"]),
    (["--dataset", "imagefolder", "--data-root", "/nonexistent/cxr"], ["/nonexistent/cxr"]),
])
def test_a_failed_start_leaves_no_run_directory(tmp_path, args, names):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # the case only exists where CUDA is absent
    env = {"TORCH_HOME": str(tmp_path / "torch-home")}  # no cached ImageNet weights: an offline download
    base = TINY if "--dataset" not in args else ["--backbone", "resnet18", "--weights", "none", "--device", "cpu"]
    result = run_txkit("train", *base, "--epochs", "1", *args, cwd=tmp_path, env=env)
    assert_one_line_error(result, *names)
    assert not (tmp_path / "runs").exists()


def test_a_name_clash_fails_before_a_run_directory_exists(tmp_path, site):
    make_distribution(site, "clash-plugin", "clash_plugin", """
        import txkit
        @txkit.hookimpl
        def register_backbones(register):
            register("resnet18", lambda **kw: None, "a second resnet18")
    """)
    result = run_txkit("train", *TINY, "--epochs", "1", cwd=tmp_path, env=pythonpath(site))
    assert_one_line_error(result, "resnet18")
    assert not (tmp_path / "runs").exists()


# --- 7. a run whose epochs are trained but whose test split failed ---------------------------------------------

def test_resume_takes_skip_bad_images_and_tests_a_run_whose_test_image_broke_after_training(tmp_path, monkeypatch):
    root = image_folders(tmp_path / "data")
    bad = root / "test/a/1.png"
    cfg = TrainConfig(dataset="imagefolder", data_root=str(root), backbone="resnet18", weights="none", epochs=2,
                      batch_size=8, image_size=32, device="cpu", cache_dir=str(tmp_path / "cache"))
    original = Trainer.train_epoch

    def breaking(self, epoch, progress, task):
        if epoch == 1:  # after the start's check of every image, before the test split is read
            bad.write_bytes(b"junk")
        return original(self, epoch, progress, task)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", breaking)
        with pytest.raises(DataError, match=str(bad)):
            session.train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    refused = run_txkit("train", "--resume", str(run))
    assert_one_line_error(refused, bad, "--skip-bad-images")
    assert "epoch 3/2" not in refused.stderr + refused.stdout  # the start's check fails before any progress bar
    resumed = run_txkit("train", "--resume", str(run), "--skip-bad-images", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 3/2" not in resumed.stderr and "2 epoch(s) are trained; testing" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "completed" and summary["epochs_run"] == 2 and summary["test"] is not None
    assert metric_epochs(run) == [1, 2]
    assert json.loads((run / "config.json").read_text())["config"]["skip_bad_images"] is True  # kept from now on
    ids = list(np.load(run / "predictions_test.npz")["ids"])
    assert len(ids) == 5 and str(bad) not in ids


def test_a_resumed_early_stopped_run_trains_no_epoch_past_its_stop(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=4, patience=1)
    aucs = iter([0.9, 0.5])  # epoch 2 does not improve: patience 1 stops the run after it
    evaluate = Trainer.evaluate

    def scripted(self, data, epoch=None):
        return {**evaluate(self, data, epoch), "auc": next(aucs)}

    def failing_test(self):
        raise DataError("the test split is unreadable")
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "evaluate", scripted)
        patch.setattr(Trainer, "test_metrics", failing_test)
        with pytest.raises(DataError):
            session.train(cfg, tmp_path / "run")
    assert metric_epochs(tmp_path / "run") == [1, 2]
    run, summary = session.resume(str(tmp_path / "run"))
    assert summary["status"] == "early-stopped" and summary["test"] is not None
    assert metric_epochs(run) == [1, 2]


# --- 10. the safety net at the CLI boundary ----------------------------------------------------------------

def test_an_unexpected_exception_is_one_line_naming_the_traceback_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from txkit.cli.main import build_cli

    def buggy(cfg, num_classes):
        return {}["missing"]
    monkeypatch.setattr("txkit.training.inspection.inspect_model", buggy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TXKIT_CACHE_DIR", raising=False)  # the default cache folder (test_faults_machine: the others)
    monkeypatch.delenv("TXKIT_DEBUG", raising=False)
    result = CliRunner().invoke(build_cli(), ["inspect", "--num-classes", "2"])
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output
    assert "KeyError" in lines[0] and "TXKIT_DEBUG=1" in lines[0]
    report = next((tmp_path / "cache" / "txkit" / "crashes").glob("txkit-crash-*.txt"))
    assert str(report) in lines[0] and "Traceback" in report.read_text()
    monkeypatch.setenv("TXKIT_DEBUG", "1")
    debug = CliRunner().invoke(build_cli(), ["inspect", "--num-classes", "2"])
    assert isinstance(debug.exception, KeyError)
