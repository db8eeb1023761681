"""One run on two processes (torchrun, DistributedDataParallel, gloo on CPU) against one process.

The network is cxrnet: no batch-norm, but dropout, which txkit draws for the whole global batch so that the
two-process run follows the one-process run up to float reduction order. The runs are shared by the tests
(module fixtures) because every torchrun start costs two Python processes importing torch. The first tests
check the pieces in one process (no process group): batch-wide dropout and the loss weighting of shards.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from faults import error_lines
from helpers import make_distribution, pythonpath, run_txkit
from safetensors.torch import load_file

# 42 training images in global batches of 9, 9, 9, 9, 6: the processes take 5 and 4 images of a batch of 9
RUN = ("--backbone", "cxrnet", "--weights", "none", "--data-option", "per_class=6", "--data-option", "size=32",
       "--image-size", "64", "--batch-size", "9", "--schedule", "constant", "--device", "cpu", "--json")
TOLERANCE = 1e-5


def torchrun(*args, nproc=2, env=None, timeout=600):
    """``torchrun --standalone --nproc_per_node=N -m txkit ...`` (torch.distributed.run is what torchrun runs)."""
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "txkit", *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def extend_to_two_epochs(run):
    """A finished 1-epoch run becomes a 2-epoch run interrupted after its first epoch (constant schedule:
    its state is exactly that of a 2-epoch run after epoch 1), so --resume trains epoch 2."""
    config = json.loads((run / "config.json").read_text())
    config["config"]["epochs"] = 2
    (run / "config.json").write_text(json.dumps(config))
    (run / "summary.json").unlink()


def max_difference(a, b, prefix=""):
    ta, tb = load_file(str(a)), load_file(str(b))
    keys = [k for k in ta if k.startswith(prefix)]
    assert keys and set(keys) <= set(tb)
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in keys)


# ------------------------------------------------------------------ the pieces, in one process (fast)

def test_batch_wide_dropout_gives_each_process_its_rows_of_one_process_mask():
    import torch

    from txkit.training import ddp as sharding

    x = torch.randn(10, 64)
    torch.manual_seed(3)
    whole = torch.nn.functional.dropout(x, 0.5, True)
    dropout = sharding.GlobalDropout(0.5).train()
    for r in range(3):
        sharding._STEP.size, sharding._STEP.rows = 10, slice(r, None, 3)
        torch.manual_seed(3)
        try:
            assert torch.equal(dropout(x[r::3]), whole[r::3])
        finally:
            sharding._STEP.size = None


@pytest.mark.parametrize("kind", ["plain", "class-weights", "multilabel-with-unknowns"])
def test_shard_losses_add_up_to_the_global_batch_loss(monkeypatch, kind):
    from types import SimpleNamespace

    import torch

    from txkit.training import ddp as sharding
    from txkit.data.loader import EpochBatches
    from txkit.training.imbalance import loss_function

    rng = np.random.default_rng(0)
    n, k, world = 7, 3, 3  # 7 images on 3 processes: shards of 3, 2 and 2; the last batch of 2 leaves one empty
    if kind == "multilabel-with-unknowns":
        labels = rng.integers(0, 2, (n, k)).astype(np.float32)
        labels[rng.random((n, k)) < 0.3] = np.nan
        loss_fn, task = loss_function("multilabel", [2.0, 0.5, 1.0]), "multilabel"
    else:
        labels = rng.integers(0, k, n)
        loss_fn, task = loss_function("multiclass", [3.0, 1.0, 0.2] if kind == "class-weights" else None), "multiclass"
    logits = torch.randn(n, k)
    y = torch.as_tensor(labels)
    trainer = SimpleNamespace(train_data=SimpleNamespace(split=SimpleNamespace(labels=labels)), loss_fn=loss_fn,
                              task=task, cfg=SimpleNamespace(batch_size=n, compile=False), workers=0,
                              net=torch.nn.Linear(1, 1))
    for batch in ([6, 0, 3, 2, 5, 1, 4], [4, 1]):
        total = 0.0
        for r in range(world):
            monkeypatch.setattr(sharding, "world_size", lambda: world)
            monkeypatch.setattr(sharding, "rank", lambda r=r: r)
            sampler = EpochBatches()
            sampler.current = [batch]
            steps = sharding.ShardedSteps(trainer, SimpleNamespace(batch_sampler=sampler))
            steps.batch, steps.shard = batch, batch[r::world]
            total += float(steps.loss(logits[steps.shard], y[steps.shard])) / world  # DDP averages
        assert total == pytest.approx(float(loss_fn(logits[batch], y[batch])), rel=1e-6)


def test_a_run_resumes_only_on_the_number_of_processes_it_started_on(monkeypatch):
    from txkit.errors import TxkitError
    from txkit.training import distributed

    distributed.check_resume("runs/r", {"world_size": 1, "backend": None})
    distributed.check_resume("runs/r", None)  # runs written before torchrun support: one process
    with pytest.raises(TxkitError, match=r"trained on 2 process\(es\), now started on 1.*--nproc_per_node=2"):
        distributed.check_resume("runs/r", {"world_size": 2, "backend": "gloo"})
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.raises(TxkitError, match=r"trained on 1 process\(es\), now started on 4.*without torchrun"):
        distributed.check_resume("runs/r", {"world_size": 1, "backend": None})


def test_the_resume_hint_is_the_command_that_resumes(monkeypatch):
    from txkit.training import distributed

    assert distributed.resume_command("runs/r") == "txkit train --resume runs/r"
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.resume_command("runs/r") == "torchrun --nproc_per_node=2 -m txkit train --resume runs/r"
    monkeypatch.setattr(distributed, "world_size", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed.resume_command("runs/r").startswith("torchrun --nnodes=2 --nproc_per_node=4 (and the ")


@pytest.fixture(scope="module")
def runs(module_tmp):
    root = module_tmp("ddp")
    single = run_txkit("train", *RUN, "--epochs", "1", "--out", str(root / "one"))
    assert single.returncode == 0, single.stderr
    double = torchrun("train", *RUN, "--epochs", "1", "--out", str(root / "two"))
    assert double.returncode == 0, double.stdout + double.stderr
    return root, single, double


@pytest.mark.slow
def test_two_processes_record_world_size_and_backend(runs):
    root, _, double = runs
    config = json.loads((root / "two" / "config.json").read_text())
    assert config["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert json.loads((root / "one" / "config.json").read_text())["distributed"]["world_size"] == 1
    summary = json.loads(double.stdout)  # only process 0 printed: one JSON document
    assert summary["status"] == "completed" and summary["run_dir"] == str(root / "two")


@pytest.mark.slow
def test_two_processes_end_with_the_weights_of_one(runs):
    root = runs[0]
    assert max_difference(root / "one" / "checkpoint.safetensors", root / "two" / "checkpoint.safetensors",
                          "model.") < TOLERANCE
    assert max_difference(root / "one" / "model.safetensors", root / "two" / "model.safetensors") < TOLERANCE


@pytest.mark.slow
def test_gathered_validation_metrics_equal_one_process_evaluation(runs):
    import txkit

    root = runs[0]
    line = [json.loads(x) for x in (root / "two" / "metrics.jsonl").read_text().splitlines()][-1]
    evaluated = txkit.Run(root / "two").evaluate("val", bootstrap=0)  # one process, the saved best weights
    assert evaluated["n"] == 42
    for name in ("accuracy", "f1", "auc"):
        assert line[f"val_{name}"] == pytest.approx(evaluated[name], abs=1e-6), name
    # the test split was gathered too: its stored predictions cover it, in the order one process stores
    one, two = np.load(root / "one" / "predictions_test.npz"), np.load(root / "two" / "predictions_test.npz")
    assert len(two["ids"]) == 42 and list(two["ids"]) == list(one["ids"])
    assert np.array_equal(two["y_true"], one["y_true"])
    assert np.abs(two["logits"] - one["logits"]).max() < 1e-4


@pytest.mark.slow
def test_resume_refuses_another_world_size_and_continues_under_torchrun(runs):
    root = runs[0]
    for name in ("one", "two"):
        extend_to_two_epochs(root / name)
    refused = run_txkit("train", "--resume", str(root / "two"))
    lines = error_lines(refused)
    assert refused.returncode == 1 and len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "trained on 2 process(es), now started on 1" in lines[0] and "--nproc_per_node=2" in lines[0]

    assert run_txkit("train", "--resume", str(root / "one")).returncode == 0
    resumed = torchrun("train", "--resume", str(root / "two"), "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["epochs_run"] == 2
    assert len((root / "two" / "metrics.jsonl").read_text().splitlines()) == 2
    assert max_difference(root / "one" / "checkpoint.safetensors", root / "two" / "checkpoint.safetensors",
                          "model.") < TOLERANCE


FAILING_PLUGIN = """
    import os
    import sys

    import numpy as np
    from txkit import hookimpl
    from txkit.datasets.base import Split, TxDataset
    from txkit.errors import DataError

    def training():
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "train_epoch":
            frame = frame.f_back
        return frame is not None

    def image(i):
        # a fault only process 1 meets, and only while it trains (not while the run is set up)
        if os.environ.get("RANK") == "1" and training():
            raise DataError(f"img{i}.png: cannot be decoded (fault of process 1)")
        return np.full((16, 16), 40 + 20 * (i % 4), np.uint8)

    def build(root=None, **options):
        splits = {name: Split(image, np.arange(n) % 2, ids=[f"{name}{i}.png" for i in range(n)])
                  for name, n in (("train", 16), ("val", 4), ("test", 4))}
        return TxDataset("faulty", ["a", "b"], splits)

    @hookimpl
    def register_datasets(register):
        register("faulty", "txkit_faulty:build", "fails on process 1 while training")
"""


@pytest.mark.slow
def test_a_failure_on_one_process_ends_both_with_one_line(tmp_path, site):
    make_distribution(site, "txkit-faulty", "txkit_faulty", FAILING_PLUGIN)
    result = torchrun("train", "--dataset", "faulty", "--backbone", "resnet18", "--weights", "none", "--image-size",
                      "32", "--epochs", "2", "--batch-size", "4", "--device", "cpu", "--no-image-cache",
                      "--out", str(tmp_path / "run"), env=pythonpath(site), timeout=300)
    assert result.returncode != 0
    lines = error_lines(result)
    fault = [line for line in lines if "fault of process 1" in line]
    assert len(fault) == 1 and fault[0].startswith("Error: [process 1] img"), result.stderr
    # process 0 either was stopped by torchrun (silently) or says in one line that another process failed
    assert all(line in fault or line.startswith("Error: stopped: another process") for line in lines), lines
    assert len(lines) <= 2
    assert "txkit/training" not in result.stderr  # no traceback of txkit's (torchrun prints its own report)
