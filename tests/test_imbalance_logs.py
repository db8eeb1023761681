"""Class weights, the balanced sampler, metrics.csv and TensorBoard logs."""

import csv
import json
import sys

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from faults import assert_one_line_error
from helpers import run_txkit

from txkit.errors import TxkitError
from txkit.training import checkpoint as ckpt
from txkit.training import session
from txkit.training.engine import Trainer
from txkit.training.imbalance import BalancedBatches, class_weights, loss_function, sample_weights
from txkit.training.session import RunInterrupted
from txkit import storage


def test_balanced_class_weights_match_scikit_learn():
    labels = np.array([0] * 30 + [1] * 6 + [2] * 4)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert class_weights("balanced", labels, ["a", "b", "c"], "multiclass") == pytest.approx(expected)


def test_balanced_multilabel_weights_are_pos_weight_over_known_labels():
    labels = np.array([[1, 0], [0, np.nan], [0, 1], [0, 0]], dtype=np.float32)
    # label a: 1 positive, 3 negatives; label b: 1 positive, 2 negatives (one unknown)
    assert class_weights("balanced", labels, ["a", "b"], "multilabel") == pytest.approx([3.0, 2.0])


def test_class_weights_from_a_json_file(tmp_path):
    by_name, as_list = tmp_path / "w.json", tmp_path / "l.json"
    by_name.write_text(json.dumps({"b": 2.0, "a": 0.5}))
    as_list.write_text("[0.5, 2]")
    labels = np.array([0, 1])
    assert class_weights(str(by_name), labels, ["a", "b"], "multiclass") == [0.5, 2.0]
    assert class_weights(str(as_list), labels, ["a", "b"], "multiclass") == [0.5, 2.0]


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2, 3]", "[1, -2]", "not json"])
def test_a_bad_class_weights_file_names_the_file_and_field(tmp_path, content):
    path = tmp_path / "w.json"
    path.write_text(content)
    with pytest.raises(TxkitError, match=rf"`class_weights` {path}"):
        class_weights(str(path), np.array([0, 1]), ["a", "b"], "multiclass")


@pytest.mark.parametrize("content", ["[0, 1]", "[0, 0]", "[Infinity, 1]", "[-1, 1]", "[NaN, 1]", "[1, -Infinity]",
                                     '{"a": NaN, "b": 1}'])
def test_class_weights_not_finite_or_zero_for_a_training_class_are_refused_in_one_line(tmp_path, content):
    # both classes are in the training split: a 0 drops one from the loss, all 0 make it NaN, Infinity makes it inf
    path = tmp_path / "w.json"
    path.write_text(content)
    with pytest.raises(TxkitError, match=rf"`class_weights` {path}: .*finite weight > 0") as caught:
        class_weights(str(path), np.array([0, 1, 1]), ["a", "b"], "multiclass")
    assert "\n" not in str(caught.value) and "none or balanced" in str(caught.value)


def test_a_zero_class_weight_is_kept_for_a_class_absent_from_the_training_split(tmp_path):
    path = tmp_path / "w.json"
    path.write_text("[0, 1]")
    assert class_weights(str(path), np.array([1, 1]), ["a", "b"], "multiclass") == [0.0, 1.0]
    # multi-label: "present" is a positive among the known labels (pos_weight only weighs positives)
    assert class_weights(str(path), np.array([[0, 1], [np.nan, 0]]), ["a", "b"], "multilabel") == [0.0, 1.0]
    with pytest.raises(TxkitError, match="class 'a' has weight 0"):
        class_weights(str(path), np.array([[1, 1], [np.nan, 0]]), ["a", "b"], "multilabel")


def test_weighted_loss_weighs_each_class():
    logits, target = torch.zeros(2, 2), torch.tensor([0, 1])
    per_class = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    weighted = loss_function("multiclass", [1.0, 3.0])(logits, target)
    assert float(weighted) == pytest.approx(float((per_class * torch.tensor([1.0, 3.0])).sum() / 4))


def test_balanced_sampler_draws_each_stratum_equally_often_and_repeats_by_seed():
    strata = np.array([0] * 900 + [1] * 100)
    weights = sample_weights(strata)
    draws = [i for _ in range(10) for batch in BalancedBatches(weights, 50, seed=3, epoch=_) for i in batch]
    share = np.mean(strata[draws] == 1)
    assert abs(share - 0.5) < 0.03  # 10,000 draws: the standard error of the share is 0.005
    assert list(BalancedBatches(weights, 50, 3, 1)) == list(BalancedBatches(weights, 50, 3, 1))
    assert list(BalancedBatches(weights, 50, 3, 1)) != list(BalancedBatches(weights, 50, 3, 2))


def test_balanced_sampler_and_class_weights_resume_exactly_and_are_recorded(tmp_path, tiny_cfg, monkeypatch):
    cfg = tiny_cfg(epochs=3, sampler="balanced", class_weights="balanced")
    straight, _ = session.train(cfg, tmp_path / "straight")
    original = Trainer.train_epoch

    def train_epoch(self, epoch, progress, task):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch, progress, task)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", train_epoch)
        with pytest.raises(RunInterrupted):
            session.train(cfg, tmp_path / "broken")
    resumed, _ = session.resume(str(tmp_path / "broken"))
    a, b = ckpt.load_tensors(straight / "model.safetensors"), ckpt.load_tensors(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((resumed / "config.json").read_text())
    assert config["config"]["sampler"] == "balanced" and config["config"]["class_weights"] == "balanced"
    assert len(config["resolved"]["class_weights"]) == 7


def test_metrics_csv_holds_the_same_epochs_as_metrics_jsonl(tmp_path, tiny_cfg):
    run_dir, _ = session.train(tiny_cfg(epochs=2), tmp_path / "run")
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    lines = storage.read_jsonl(run_dir / "metrics.jsonl")
    assert [int(r["epoch"]) for r in rows] == [line["epoch"] for line in lines] == [1, 2]
    assert float(rows[1]["val_auc"]) == pytest.approx(lines[1]["val_auc"])


def test_tensorboard_event_files_parse_with_tensorboards_reader(tmp_path, tiny_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = session.train(tiny_cfg(epochs=2, log="tensorboard"), tmp_path / "run")
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"loss/train", "loss/val", "auc/val", "lr"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("auc/val")] == [1, 2]
    assert tags["images"] == ["train/inputs"]


def test_tensorboard_missing_is_one_line_before_a_run_directory_exists(tmp_path, tiny_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(TxkitError, match=r"pip install 'txkit\[tensorboard\]'"):
        session.train(tiny_cfg(log="tensorboard"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_class_weights_option_on_the_cli_names_the_file(tmp_path):
    result = run_txkit("train", "--data-option", "per_class=6", "--data-option", "size=32", "--backbone",
                       "resnet18", "--weights", "none", "--epochs", "1", "--device", "cpu", "--class-weights",
                       str(tmp_path / "missing.json"), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "missing.json")
    assert not (tmp_path / "run").exists()


def test_zero_class_weights_on_the_cli_are_one_line_naming_the_flag_before_a_run_exists(tmp_path):
    weights = tmp_path / "zero.json"
    weights.write_text(json.dumps([0] * 7))  # synthetic-dld's 7 classes, all in its training split
    result = run_txkit("train", "--data-option", "per_class=6", "--data-option", "size=32", "--backbone",
                       "resnet18", "--weights", "none", "--epochs", "1", "--device", "cpu", "--class-weights",
                       str(weights), "--out", str(tmp_path / "run"))
    line = assert_one_line_error(result, "--class-weights", str(weights), "finite weight > 0")
    assert "lr" not in line.split(str(weights))[1]  # not blamed on the learning rate
    assert not (tmp_path / "run").exists()
