"""The epoch commit protocol (txkit.training.commit) on its own: tiny tensors, no training.

A crash (a kill: no handler, no cleanup) or a full disk is injected at every write of an epoch's commit;
``read`` + ``repair`` must then give the last committed epoch, its tensors, its metrics lines and its best
weights, with no pending or temporary file left, and the run must go on without an epoch twice.
"""

import errno
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from txkit import storage
from txkit.errors import TxkitError
from txkit.rundir import RunDir
from txkit.training import checkpoint as ckpt
from txkit.training import commit
from txkit.training.logs import EpochLogs

PENDING = RunDir.CHECKPOINT + ".pending"


class HardCrash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler sees it (with ``killed``, no cleanup either)."""


# --- a tiny run: what a Trainer hands the protocol, epoch by epoch ------------------------------------------

def weights(epoch: int) -> dict[str, torch.Tensor]:
    return {"fc.weight": torch.full((2, 3), float(epoch)), "fc.bias": torch.arange(2.0) + epoch * 10}


def checkpoint_of(epoch: int, best_epoch: int | None) -> tuple[dict, dict]:
    tensors = {f"model.{k}": v for k, v in weights(epoch).items()}
    adam = {"step": torch.tensor(float(epoch)), "exp_avg": torch.full((3,), epoch / 8)}
    optimizer = ckpt.split_tensors({"state": {0: adam}, "param_groups": [{"lr": 0.1, "params": [0]}]}, "optimizer",
                                   tensors)
    loop = {"epoch": epoch, "best": None if best_epoch is None else best_epoch / 10, "best_epoch": best_epoch,
            "bad_epochs": epoch - (best_epoch or 0), "trainable": ["fc"], "unfreezing": True, "phase": 0}
    return tensors, {"loop": loop, "optimizer": optimizer, "scheduler": None, "grad_scaler": {}}


def metrics_line(epoch: int) -> dict:
    return {"epoch": epoch, "phase": "full", "train_loss": 1 / epoch, "val_auc": float("nan"), "trainable": ["fc"]}


class Run:
    """A run directory driven the way Trainer drives it: commit epochs, or resume (read, then repair)."""

    def __init__(self, path: Path):
        self.path, self.epoch, self.best_epoch, self.rewrote_best = path, 0, None, 0
        self.table = EpochLogs().metrics_table  # metrics.csv, as the Trainer asks for it

    def commit_epoch(self, epoch: int, improved: bool) -> None:
        assert epoch == self.epoch + 1
        if improved:
            self.best_epoch = epoch
        tensors, state = checkpoint_of(epoch, self.best_epoch)
        commit.commit(self.path, epoch, metrics_line(epoch), tensors, state, weights(epoch) if improved else None,
                      self.best_epoch, metrics_table=self.table, on_checkpoint=self.count)

    def count(self) -> None:
        self.epoch += 1

    def resume(self) -> commit.Committed | None:
        saved = commit.read(self.path)
        if saved is None:
            return None
        self.epoch, self.best_epoch = saved.epoch, saved.state["loop"]["best_epoch"]
        model = {k[6:]: v for k, v in saved.tensors.items() if k.startswith("model.")}

        def write_best():  # Trainer.save_best: the restored network's weights
            self.rewrote_best += 1
            commit.write_best(self.path, model, self.best_epoch)
        commit.repair(self.path, saved.epoch, self.best_epoch, write_best, metrics_table=self.table)
        return saved


@pytest.fixture
def run(tmp_path):
    """A run directory with epoch 1 committed (it improved, so model.safetensors is epoch 1's)."""
    r = Run(tmp_path / "run")
    r.path.mkdir()
    r.commit_epoch(1, improved=True)
    return r


def leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.endswith((storage.TEMP_SUFFIX, ".pending")))


def metric_epochs(run_dir: Path) -> list[int]:
    return [line["epoch"] for line in storage.read_jsonl(run_dir / RunDir.METRICS)]


def csv_epochs(run_dir: Path) -> list[int]:
    rows = (run_dir / RunDir.METRICS_CSV).read_text().splitlines()[1:]
    return [int(row.split(",")[0]) for row in rows]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def assert_committed(run: Run, saved: commit.Committed, epoch: int, best_epoch: int) -> None:
    """The state read back is epoch ``epoch``'s, everywhere in the run directory."""
    assert saved.epoch == epoch == run.epoch
    assert_same(saved.tensors, checkpoint_of(epoch, best_epoch)[0])
    optimizer = ckpt.join_tensors(saved.state["optimizer"], saved.tensors)
    assert optimizer["state"][0]["step"].item() == epoch and optimizer["param_groups"][0]["params"] == [0]
    assert metric_epochs(run.path) == csv_epochs(run.path) == list(range(1, epoch + 1))
    assert saved.state["loop"]["best_epoch"] == best_epoch
    assert ckpt.tensor_metadata(run.path / RunDir.WEIGHTS) == {"epoch": str(best_epoch)}
    assert_same(ckpt.load_tensors(run.path / RunDir.WEIGHTS), weights(best_epoch))
    assert leftovers(run.path) == []
    assert sorted(p.name for p in run.path.iterdir()) == sorted(
        [RunDir.METRICS, RunDir.METRICS_CSV, RunDir.CHECKPOINT, RunDir.CHECKPOINT_STATE, RunDir.WEIGHTS])


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


# --- fault injection: the writes of a commit -----------------------------------------------------------------

def target_of(filename) -> str:
    """The file a write is for: its own name, or the name a temporary file ``.NAME.XXXXXXXX.tmp`` stands for."""
    name = Path(filename).name
    if name.startswith(".") and name.endswith(storage.TEMP_SUFFIX):
        return name[1:-len(storage.TEMP_SUFFIX)].rsplit(".", 1)[0]
    return name


class Injector:
    """One fault, armed for the next commit, at the write of ``target`` (a file name, or "rename" for the
    rename of the pending tensors): ``when`` is "before" (its temporary file made, no byte written) or
    "during" (half of the bytes written)."""

    def __init__(self, monkeypatch, fault):
        self.point, self.fault, self.fired = None, fault, []
        write_bytes, save_tensors_file, replace = storage.atomic_write_bytes, ckpt.save_file, os.replace

        def atomic_write_bytes(path, data):
            for when, written in (("before", b""), ("during", data[: len(data) // 2])):
                if self.hit(target_of(path), when):
                    with storage.writing(Path(path)) as tmp:
                        Path(tmp).write_bytes(written)
                        raise self.fault()
            return write_bytes(path, data)

        def save_file(tensors, filename, metadata=None):
            if self.hit(target_of(filename), "before"):
                raise self.fault()
            if self.hit(target_of(filename), "during"):
                save_tensors_file(tensors, filename, metadata=metadata)
                with open(filename, "r+b") as fh:
                    fh.truncate(os.path.getsize(filename) // 2)
                raise self.fault()
            return save_tensors_file(tensors, filename, metadata=metadata)

        def os_replace(src, dst):
            if str(src).endswith(".pending") and self.hit("rename", "before"):
                raise self.fault()
            return replace(src, dst)
        monkeypatch.setattr(storage, "atomic_write_bytes", atomic_write_bytes)
        monkeypatch.setattr(ckpt, "save_file", save_file)
        monkeypatch.setattr(os, "replace", os_replace)

    def arm(self, target: str, when: str) -> None:
        self.point = (target, when)

    def hit(self, target: str, when: str) -> bool:
        if self.point != (target, when):
            return False
        self.fired.append(self.point)
        self.point = None  # one shot
        return True


@pytest.fixture
def crash(monkeypatch):
    """Kill the process at a write: HardCrash, and like SIGKILL no cleanup (temporary files stay)."""
    exit_writing = storage.writing.__exit__

    def no_cleanup_when_killed(self, exc_type, exc, tb):
        return False if isinstance(exc, HardCrash) else exit_writing(self, exc_type, exc, tb)
    monkeypatch.setattr(storage.writing, "__exit__", no_cleanup_when_killed)
    return Injector(monkeypatch, HardCrash)


def enospc():
    return OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def full_disk(monkeypatch):
    """The disk fills up at a write: OSError ENOSPC, handled as txkit handles it."""
    return Injector(monkeypatch, enospc)


# every point of an epoch's commit, in order, and the epoch in force after a crash there
COMMIT_POINTS = [
    ("metrics.jsonl", "before", 1),        # before the metrics line
    ("metrics.jsonl", "during", 1),
    ("metrics.csv", "before", 1),          # after the metrics line, before the table
    ("metrics.csv", "during", 1),
    (PENDING, "before", 1),                # after metrics, before the pending tensors
    (PENDING, "during", 1),
    ("checkpoint.json", "before", 1),      # after the pending tensors, before the commit point
    ("checkpoint.json", "during", 1),
    ("rename", "before", 2),               # after checkpoint.json (committed), before the rename
    ("model.safetensors", "before", 2),    # after the rename, before the best weights
    ("model.safetensors", "during", 2),
]


def point_id(point):
    return f"{point[1]}-{point[0]}"


# an epoch that did not improve writes no best weights
CRASHES = [(*point, improved) for point in COMMIT_POINTS for improved in (True, False)
           if improved or point[0] != "model.safetensors"]


@pytest.mark.parametrize("target, when, in_force, improved", CRASHES,
                         ids=[f"{point_id(c)}-{'improved' if c[3] else 'not-improved'}" for c in CRASHES])
def test_a_crash_anywhere_in_a_commit_resumes_from_the_last_committed_epoch(run, crash, target, when, in_force,
                                                                           improved):
    crash.arm(target, when)
    with pytest.raises(HardCrash):
        run.commit_epoch(2, improved)
    assert crash.fired == [(target, when)]
    best = 2 if improved and in_force == 2 else 1

    resumed = Run(run.path)
    saved = resumed.resume()
    assert_committed(resumed, saved, in_force, best)
    assert resumed.rewrote_best == (1 if best == 2 else 0)  # best weights cut short are redone, once

    # the run goes on, and its history never holds an epoch twice
    for epoch in range(in_force + 1, 4):
        resumed.commit_epoch(epoch, improved=epoch == 2 and improved)
    assert_committed(resumed, Run(run.path).resume(), 3, 2 if improved else 1)


@pytest.mark.parametrize("target, when", [p[:2] for p in COMMIT_POINTS if p[2] == 1],
                         ids=[point_id(p) for p in COMMIT_POINTS if p[2] == 1])
def test_a_crash_before_the_first_commit_leaves_nothing_to_resume(tmp_path, crash, target, when):
    fresh = Run(tmp_path)
    crash.arm(target, when)
    with pytest.raises(HardCrash):
        fresh.commit_epoch(1, improved=True)
    assert commit.read(tmp_path) is None and fresh.epoch == 0
    assert not (tmp_path / RunDir.CHECKPOINT).exists() and not (tmp_path / RunDir.WEIGHTS).exists()


def test_a_clean_commit_is_counted_once_its_checkpoint_is_in_place(run):
    run.commit_epoch(2, improved=False)
    assert run.epoch == 2 and leftovers(run.path) == []
    saved = Run(run.path).resume()
    assert saved.epoch == 2 and ckpt.tensor_metadata(run.path / RunDir.WEIGHTS) == {"epoch": "1"}


# --- a full disk at each write -------------------------------------------------------------------------------

WRITES = [("metrics.jsonl", 1), ("metrics.csv", 1), (PENDING, 1), ("checkpoint.json", 1), ("model.safetensors", 2)]


@pytest.mark.parametrize("when", ["before", "during"])
@pytest.mark.parametrize("target, in_force", WRITES, ids=[w[0] for w in WRITES])
def test_a_full_disk_in_any_write_is_one_line_and_keeps_the_previous_commit(run, full_disk, target, in_force, when):
    before = tree_hashes(run.path)
    full_disk.arm(target, when)
    with pytest.raises(storage.WriteError) as info:
        run.commit_epoch(2, improved=True)
    message = str(info.value)
    assert "\n" not in message and target in message and "No space left on device" in message
    assert leftovers(run.path) == []  # no temporary file, no pending tensors
    assert run.epoch == in_force  # what the Trainer counts (and the error message reports)
    if in_force == 1:  # nothing of epoch 2 is in force: checkpoint and best weights untouched
        for name in (RunDir.CHECKPOINT, RunDir.CHECKPOINT_STATE, RunDir.WEIGHTS):
            assert tree_hashes(run.path)[name] == before[name]
    resumed = Run(run.path)
    assert_committed(resumed, resumed.resume(), in_force, in_force)
    resumed.commit_epoch(in_force + 1, improved=False)  # the disk has room again: the run goes on
    assert metric_epochs(run.path) == list(range(1, in_force + 2))


def test_a_full_disk_reported_by_safetensors_itself_is_one_line_too(run, monkeypatch):
    def save_file_fails(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device\" })\nmore detail")
    monkeypatch.setattr(ckpt, "save_file", save_file_fails)
    with pytest.raises(storage.WriteError, match=r"checkpoint\.safetensors\.pending: cannot write") as info:
        run.commit_epoch(2, improved=True)
    assert "\n" not in str(info.value) and leftovers(run.path) == [] and run.epoch == 1
    monkeypatch.undo()
    assert Run(run.path).resume().epoch == 1


# --- damaged or mismatched checkpoints ------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "not-an-object", "no-optimizer", "no-loop"])
def test_a_damaged_checkpoint_json_is_one_line_naming_it_and_the_fix(run, damage):
    path = run.path / RunDir.CHECKPOINT_STATE
    text = path.read_bytes()
    saved = json.loads(text)
    path.write_bytes({"random-bytes": os.urandom(200), "truncated": text[: len(text) // 2],
                      "not-an-object": b"[1, 2]\n",
                      "no-optimizer": json.dumps({"loop": saved["loop"]}).encode(),
                      "no-loop": json.dumps({**saved, "loop": 3}).encode()}[damage])
    before = tree_hashes(run.path)
    with pytest.raises(TxkitError) as info:
        commit.read(run.path)
    assert_one_line(info.value, path)
    assert tree_hashes(run.path) == before  # a failed read changes nothing


@pytest.mark.parametrize("damage", ["missing", "older", "random-bytes", "truncated", "pending-of-another-epoch"])
def test_tensors_checkpoint_json_did_not_commit_are_one_line_naming_them_and_the_fix(run, damage):
    final = run.path / RunDir.CHECKPOINT
    older = final.read_bytes()  # epoch 1's tensors
    run.commit_epoch(2, improved=False)
    if damage == "missing":
        final.unlink()
    elif damage == "older":  # e.g. restored from a backup: a readable file, but not what checkpoint.json names
        final.write_bytes(older)
    elif damage == "random-bytes":
        final.write_bytes(os.urandom(final.stat().st_size))
    elif damage == "truncated":  # the header (and its token) survives, the tensors do not
        final.write_bytes(final.read_bytes()[:-20])
    else:  # the rename was never done, and the side file is not the committed one
        final.unlink()
        (run.path / PENDING).write_bytes(older)
    before = tree_hashes(run.path)
    with pytest.raises(TxkitError) as info:
        commit.read(run.path)
    assert_one_line(info.value, final)
    if damage != "truncated":
        assert isinstance(info.value, commit.CheckpointError)
    assert tree_hashes(run.path) == before


def assert_one_line(error: Exception, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message and commit.RESUME_FIX in message, message


# --- the files stay those today's runs write and resume --------------------------------------------------------

def test_the_files_of_a_commit_keep_their_names_keys_tokens_and_metadata(run):
    run.commit_epoch(2, improved=True)
    text = (run.path / RunDir.CHECKPOINT_STATE).read_text()
    saved = json.loads(text)
    assert list(saved) == ["loop", "optimizer", "scheduler", "grad_scaler", "tensors_token"]
    assert re.fullmatch(r"2-[0-9a-f]{32}", saved["tensors_token"])
    assert text == json.dumps(saved, indent=2) + "\n"
    assert saved["loop"] == checkpoint_of(2, 2)[1]["loop"]
    assert ckpt.tensor_metadata(run.path / RunDir.CHECKPOINT) == {"token": saved["tensors_token"]}
    assert ckpt.tensor_metadata(run.path / RunDir.WEIGHTS) == {"epoch": "2"}
    lines = (run.path / RunDir.METRICS).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert json.loads(lines[1])["val_auc"] == {"__float__": "nan"}


def handmade_run(path: Path, rename_done: bool, token: bool = True) -> None:
    """A run directory in today's format, written without txkit.training.commit: epoch 2 committed, its
    best weights (epoch 2) cut short by a crash, a stale temporary file and epoch 3's uncommitted line."""
    path.mkdir()
    tensors, state = checkpoint_of(2, 2)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    state = {**state, **({"tensors_token": "2-" + "ab" * 16} if token else {})}
    (path / RunDir.CHECKPOINT_STATE).write_text(json.dumps(state, indent=2) + "\n")
    tensor_file = RunDir.CHECKPOINT if rename_done else PENDING
    save_file(tensors, str(path / tensor_file), metadata={"token": "2-" + "ab" * 16} if token else None)
    if not rename_done:
        save_file(checkpoint_of(1, 1)[0], str(path / RunDir.CHECKPOINT), metadata={"token": "1-" + "cd" * 16})
    save_file(weights(1), str(path / RunDir.WEIGHTS), metadata={"epoch": "1"})
    (path / RunDir.METRICS).write_text("".join(json.dumps(metrics_line(e) | {"val_auc": 0.5}) + "\n"
                                               for e in (1, 2, 3)))
    (path / f".{RunDir.WEIGHTS}.k2j4h5g6{storage.TEMP_SUFFIX}").write_bytes(b"half")


@pytest.mark.parametrize("rename_done, token", [(True, True), (False, True), (True, False)],
                         ids=["renamed", "rename-pending", "before-tokens"])
def test_a_run_directory_in_todays_format_resumes(tmp_path, rename_done, token):
    handmade_run(tmp_path / "run", rename_done, token)
    resumed = Run(tmp_path / "run")
    saved = resumed.resume()
    assert saved.epoch == 2 and saved.state.get("tensors_token") == ("2-" + "ab" * 16 if token else None)
    assert_same(saved.tensors, checkpoint_of(2, 2)[0])
    assert metric_epochs(resumed.path) == csv_epochs(resumed.path) == [1, 2]
    assert resumed.rewrote_best == 1 and ckpt.tensor_metadata(resumed.path / RunDir.WEIGHTS) == {"epoch": "2"}
    assert leftovers(resumed.path) == []
