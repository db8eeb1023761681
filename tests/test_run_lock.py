"""One writer per run directory: a training or a resume holds RUN/.txkit.lock for its whole life; a second
writer is refused in one line naming the first; a lock a dead process left is taken over; the temp files of
an interrupted write are removed when the run is opened again."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from faults import assert_one_line_error, tree_hashes
from helpers import run_txkit

from txkit import storage
from txkit.rundir import RunBusyError, RunDir
from txkit.training import checkpoint as ckpt
from txkit.training import session
from txkit.training.engine import Trainer

TINY = ["--dataset", "synthetic-dld", "--data-option", "per_class=6", "--data-option", "size=32",
        "--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--batch-size", "16", "--device", "cpu"]


def metric_epochs(run_dir):
    return [line["epoch"] for line in storage.read_jsonl(run_dir / "metrics.jsonl")]


@pytest.fixture
def run_copy(interrupted_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(interrupted_run, copy)
    return copy


ROOT = Path(__file__).resolve().parents[1]


def python(code: str, *args: str) -> subprocess.Popen:
    """A new interpreter running ``code`` (with this checkout first on its path); its stdin stays open until
    it is killed or communicated with."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

HOLD_LOCK = """
    import sys
    from txkit.rundir import RunDir
    lock = RunDir(sys.argv[1]).lock()
    print("locked", flush=True)
    sys.stdin.read()  # holds the lock until killed
"""


def wait_for(predicate, what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_second_resume_while_the_first_runs_is_refused_in_one_line_and_every_epoch_is_written_once(run_copy,
                                                                                                     monkeypatch):
    # The first resume runs in this process (a thread), each epoch held until the test opens the gate; the
    # second is a `txkit train --resume` process of its own.
    started, gate, outcome = threading.Event(), threading.Event(), {}
    original = Trainer.train_epoch

    def gated(self, epoch, progress, task):
        started.set()
        assert gate.wait(300)
        return original(self, epoch, progress, task)

    def first():
        try:
            outcome["summary"] = session.resume(str(run_copy), console=Console(quiet=True))[1]
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = exc
    monkeypatch.setattr(Trainer, "train_epoch", gated)
    monkeypatch.setattr(sys, "argv", ["txkit", "train", "--resume", str(run_copy)])  # what the lock records
    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(300), outcome
        before = tree_hashes(run_copy)
        second = run_txkit("train", "--resume", str(run_copy))
        assert thread.is_alive()  # refused while the first one runs, not after it
        assert_one_line_error(second, f"txkit process {os.getpid()}", f"(txkit train --resume {run_copy}, since",
                              "wait for it to finish or stop it", f"kill {os.getpid()}")
        assert tree_hashes(run_copy) == before  # the refused one touched nothing
    finally:
        gate.set()
        thread.join(300)
    assert "error" not in outcome, outcome
    assert outcome["summary"]["status"] == "completed" and metric_epochs(run_copy) == [1, 2, 3]
    assert not (run_copy / RunDir.LOCK).exists()  # released at the end


def test_a_second_training_into_the_same_out_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = python(HOLD_LOCK, str(out))  # stands in for a training that is writing into `out`
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_txkit("train", *TINY, "--epochs", "1", "--out", str(out))
        assert_one_line_error(result, "--out", str(out), f"txkit process {holder.pid}",
                              "wait for it to finish or stop it")
        assert [p.name for p in out.iterdir()] == [RunDir.LOCK]  # still only the holder's lock file
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(run_copy, monkeypatch):
    holder = python(HOLD_LOCK, str(run_copy))
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)  # no handler runs: the lock file stays, naming a dead pid
    holder.wait()
    record = json.loads((run_copy / RunDir.LOCK).read_text())
    assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
    seen = []
    original = Trainer.train_epoch

    def watching(self, epoch, progress, task):
        seen.append(RunDir(run_copy).holder())
        return original(self, epoch, progress, task)
    monkeypatch.setattr(Trainer, "train_epoch", watching)
    run, summary = session.resume(str(run_copy))
    assert summary["status"] == "completed" and metric_epochs(run) == [1, 2, 3]
    assert seen and all(h["pid"] == os.getpid() for h in seen)  # this process held it while it trained
    assert not (run_copy / RunDir.LOCK).exists()


def test_a_forked_child_does_not_keep_the_run_locked_after_its_parent_died(tmp_path):
    # DataLoader workers are forked: one that outlives a SIGKILLed trainer must not hold the run.
    parent = python("""
        import os, sys, time
        from txkit.rundir import RunDir
        lock = RunDir(sys.argv[1]).lock()
        if os.fork() == 0:
            print(os.getpid(), flush=True)  # the fork hooks have run
            time.sleep(120)
            os._exit(0)
        time.sleep(120)
    """, str(tmp_path))
    child = None
    try:
        child = int(parent.stdout.readline())
        with pytest.raises(RunBusyError, match=f"txkit process {parent.pid}"):
            RunDir(tmp_path).lock()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        os.kill(child, 0)  # still alive, holding the parent's open lock file
        with RunDir(tmp_path).lock() as lock:
            assert RunDir(tmp_path).holder()["pid"] == os.getpid()
        assert lock.fd is None and not (tmp_path / RunDir.LOCK).exists()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_resume_removes_the_temp_files_of_an_interrupted_write_before_anything_else(run_copy, monkeypatch):
    # What a SIGKILL inside writes leaves: storage.py's temp files and tensors no checkpoint.json commits.
    leftovers = [run_copy / ".checkpoint.safetensors.k3j2h1.tmp", run_copy / ".metrics.jsonl.a8b7c6.tmp"]
    for path in leftovers:
        path.write_bytes(b"\0" * 1000)
    pending = run_copy / RunDir.CHECKPOINT_PENDING
    ckpt.save_tensors(pending, {"w": torch.zeros(3)}, metadata={"token": "never-committed"})
    seen = []
    original = Trainer.__init__

    def building(self, *args, **kwargs):
        seen.append(sorted(p.name for p in run_copy.iterdir() if p.name.endswith((".tmp", ".pending"))))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Trainer, "__init__", building)
    run, summary = session.resume(str(run_copy))
    assert seen == [[]]  # gone before the run was even built
    assert summary["status"] == "completed" and metric_epochs(run) == [1, 2, 3]
