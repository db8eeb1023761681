"""Failures the machine or the user's files cause, not txkit: a full disk (checkpoints, the image cache, the
feature cache's memory-mapped spill), a loader worker killed, memory exhausted, a broken tensorboard install,
a damaged experiment state.json, names too long and folders that refuse writes. Each ends in one line that
names the file or option and the fix, never in the CLI's "this is a txkit bug" (kept for real bugs, whose
crash report goes under the configured cache folder)."""

import errno
import io
import json
import os
import shutil
import signal
import sys
import types
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from rich.console import Console

from faults import assert_one_line_error

from txkit import storage
from txkit.cli.main import build_cli
from txkit.data import cache as image_cache
from txkit.data.cache import CacheSettings
from txkit.data.loader import TensorSplit
from txkit.errors import DataError, TxkitError
from txkit.experiments.state import ExperimentState, StateError
from txkit.training import checkpoint as ckpt
from txkit.training import feature_cache as features
from txkit.training import session
from txkit.training.engine import Trainer

# timm's 0.4M-parameter test network on 16 px images: a run of a few seconds on a busy 2-core machine
SMALL = dict(backbone="timm/test_resnet", data_options={"per_class": "3", "size": "16"}, batch_size=8)
TINY = ["--dataset", "synthetic-dld", "--data-option", "per_class=3", "--data-option", "size=16",
        "--backbone", "timm/test_resnet", "--weights", "none", "--batch-size", "8", "--device", "cpu"]
Usage = namedtuple("Usage", "total used free")
KILLED = "DataLoader worker (pid 4242) is killed by signal: Killed. "  # torch's own words (a SIGKILL)


def cli(*args, env=None):
    """``txkit ARGS`` in this process (monkeypatches apply), as a CompletedProcess-like result."""
    result = CliRunner().invoke(build_cli(), list(args), env={"TXKIT_DEBUG": None, **(env or {})})
    return types.SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr,
                                 exception=result.exception)


def no_bug(result):
    text = result.stderr + result.stdout
    assert "txkit bug" not in text and "unexpected" not in text, text


def disk_with_free(monkeypatch, free: int):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - free, free))


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if p.name.endswith((".tmp", ".pending")))


def quiet():
    out = io.StringIO()
    return Console(file=out, width=400), out


# --- 1. full disks ----------------------------------------------------------------------------------------

def test_a_checkpoint_on_a_full_disk_names_its_folder_and_the_space_it_needs(tmp_path, monkeypatch):
    tensors = {"w": torch.zeros(1024, 256)}  # 1 MiB

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt, "save_file", full)
    disk_with_free(monkeypatch, 300 * 1024)
    with pytest.raises(storage.WriteError) as caught:
        ckpt.save_tensors(tmp_path / "checkpoint.safetensors", tensors)
    message = str(caught.value)
    assert caught.value.no_space and "\n" not in message
    assert f"{tmp_path} needs 1.0 MiB free for it, 300.0 KiB is free" in message, message
    assert not list(tmp_path.iterdir())


def test_safetensors_own_full_disk_error_is_recognised(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                              'space left on device" })')
    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(storage.WriteError, match=rf"{tmp_path} needs .* free for it") as caught:
        ckpt.save_tensors(tmp_path / "model.safetensors", {"w": torch.zeros(4)})
    assert caught.value.no_space and not list(tmp_path.iterdir())


def test_a_run_whose_folder_turns_read_only_says_so_not_free_space(tmp_path, tiny_cfg, monkeypatch):
    original = storage.atomic_write_bytes

    def read_only(path, data):
        if Path(path).name == "metrics.jsonl":
            raise storage.WriteError(f"{path}: cannot write (Read-only file system)")
        return original(path, data)
    monkeypatch.setattr(storage, "atomic_write_bytes", read_only)
    with pytest.raises(TxkitError, match=r"Read-only file system.*make .* writable and continue with txkit train "
                                         r"--resume") as caught:
        session.train(tiny_cfg(epochs=1, **SMALL), tmp_path / "run")
    assert "free space" not in str(caught.value)


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        folder = tmp_path / "images" / name
        folder.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(folder / f"{i}.png")
    from txkit.plugins import create

    return create("dataset", "imagefolder", root=str(tmp_path / "images"), val_fraction=0.0).split("train")


def test_an_image_cache_the_disk_has_no_room_for_is_refused_before_writing(tmp_path, image_folder, monkeypatch):
    settings = CacheSettings(directory=str(tmp_path / "cache"), progress=False)
    disk_with_free(monkeypatch, 1000)
    written = []
    monkeypatch.setattr(image_cache._Writer, "put", lambda self, index, image: written.append(index))
    with pytest.raises(DataError) as caught:
        TensorSplit(image_folder, 32, "multiclass", cache=settings, label="imagefolder train")
    need = len(image_folder) * 32 * 32 + image_cache.NPY_HEADER  # the images at 32 x 32, uint8
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'cache' / 'images'}: cannot write the image cache of imagefolder train")
    assert f"it needs {storage.human_bytes(need)}, 1000 B is free" in message and "`cache_dir`" in message
    assert not written and [p.suffix for p in (tmp_path / "cache" / "images").iterdir()] == [".lock"]


def test_an_image_cache_that_fills_the_disk_while_written_names_the_size(tmp_path, image_folder, monkeypatch):
    settings = CacheSettings(directory=str(tmp_path / "cache"), progress=False)

    def full(self, index, image):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(image_cache._Writer, "put", full)
    need = storage.human_bytes(len(image_folder) * 32 * 32 + image_cache.NPY_HEADER)
    with pytest.raises(DataError, match=rf"images: cannot write the image cache \(No space left on device: it "
                                        rf"needs {need}, .* is free\).*`cache_dir`"):
        TensorSplit(image_folder, 32, "multiclass", cache=settings)
    assert [p.suffix for p in (tmp_path / "cache" / "images").iterdir()] == [".lock"]


# --- the feature cache's spill ------------------------------------------------------------------------------

def test_a_spill_the_disk_has_no_room_for_is_refused_before_any_file_exists(tmp_path, monkeypatch):
    disk_with_free(monkeypatch, 4096)
    with pytest.raises(features.SpillError) as caught:
        features.FeatureStore(100, (16,), torch.float32, 0, tmp_path, keep_free=1024)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: cannot hold the feature cache's memory-mapped file")
    assert "it needs 6.2 KiB (and 1.0 KiB kept for checkpoints), 4.0 KiB is free" in message, message
    assert not list(tmp_path.iterdir())


def test_a_spill_reserves_its_blocks_so_a_full_disk_raises_instead_of_sigbus(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(features.SpillError, match=r"No space left on device: it needs 6.2 KiB"):
        features.FeatureStore(100, (16,), torch.float32, 0, tmp_path)
    assert not list(tmp_path.iterdir())  # the temp file is gone


def test_a_spill_is_reserved_in_full_before_it_is_mapped(tmp_path, monkeypatch):
    reserved = []
    original = storage.reserve
    monkeypatch.setattr(storage, "reserve", lambda fd, size: (reserved.append(size), original(fd, size)))
    store = features.FeatureStore(100, (16,), torch.float16, 0, tmp_path)
    assert reserved == [3200] and store.path.stat().st_size == 3200
    assert os.stat(store.path).st_blocks * 512 >= 3200  # blocks on disk, not a sparse file
    store.put(torch.tensor([3]), torch.ones(1, 16))
    assert store.values[3].tolist() == [1.0] * 16 and store.values[2].tolist() == [0.0] * 16
    store.close()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("unsupported", [errno.EOPNOTSUPP, None])
def test_reserve_writes_zeros_where_fallocate_is_missing_or_unsupported(tmp_path, monkeypatch, unsupported):
    if unsupported is None:
        monkeypatch.delattr(os, "posix_fallocate", raising=False)
    else:
        monkeypatch.setattr(os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(OSError(unsupported, "no")))
    path = tmp_path / "file"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        storage.reserve(fd, 40_000_000)  # more than one 16 MiB chunk
    finally:
        os.close(fd)
    assert path.stat().st_size == 40_000_000 and os.stat(path).st_blocks * 512 >= 40_000_000


def test_a_phase_whose_spill_finds_a_full_disk_trains_without_the_cache(tmp_path, tiny_cfg, monkeypatch):
    """The run that died of SIGBUS (exit 135): now the spill's reservation fails, the phase trains on images with
    a one-line warning, and the run ends as one trained without the cache, leaving no temp file."""
    cfg = tiny_cfg(**SMALL, epochs=2, image_cache=False, strategy="last-layer")
    off_dir, off = session.train(cfg.replace(feature_cache=False), tmp_path / "off")
    monkeypatch.setattr(features, "RAM_LIMIT_BYTES", 0)  # every cache spills

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full)
    out = io.StringIO()
    on_dir, on = session.train(cfg, tmp_path / "on", Console(file=out, width=80))  # a narrow terminal
    assert on["status"] == "completed"
    phase = on["feature_cache"]["phases"][0]
    assert not phase["used"] and phase["reason"].startswith(f"no room on disk ({on_dir}: cannot hold")
    warnings = [line for line in out.getvalue().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(on_dir) in warnings[0] and "No space left on device" in warnings[0]
    assert "trains without the feature cache" in warnings[0]
    assert temp_files(on_dir) == []
    lines = [[{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in
              (d / "metrics.jsonl").read_text().splitlines()] for d in (on_dir, off_dir)]
    assert lines[0] == lines[1]  # exactly the uncached run
    assert (on_dir / "model.safetensors").read_bytes() == (off_dir / "model.safetensors").read_bytes()


# --- 2. a loader worker killed, memory exhausted ---------------------------------------------------------------

def test_a_loader_worker_killed_by_the_oom_killer_is_one_line_and_the_run_resumes(tmp_path, tiny_cfg, monkeypatch):
    """A real worker process SIGKILLs itself in the second epoch (as the OOM killer does); DataLoader's own
    RuntimeError becomes one line naming `num_workers` and `batch_size`, and the run resumes."""
    marker = tmp_path / "kill-now"
    original_getitems, original_commit = TensorSplit.__getitems__, Trainer.commit_epoch

    def getitems(self, indices):
        if torch.utils.data.get_worker_info() is not None and marker.exists():
            os.kill(os.getpid(), signal.SIGKILL)
        return original_getitems(self, indices)

    def commit_epoch(self, line, improved):
        original_commit(self, line, improved)
        marker.touch()  # the workers forked for epoch 1 see it from now on
    monkeypatch.setattr(TensorSplit, "__getitems__", getitems)
    monkeypatch.setattr(Trainer, "commit_epoch", commit_epoch)
    cfg = tiny_cfg(**SMALL, epochs=2, num_workers=1, feature_cache=False)
    with pytest.raises(TxkitError) as caught:
        session.train(cfg, tmp_path / "run")
    message = str(caught.value)
    # torch says "is killed by signal: Killed" or, when its SIGCHLD handler is not the one to notice,
    # "exited unexpectedly"
    assert "\n" not in message and message.startswith("a data loader worker process ")
    assert "killed by the system's out-of-memory killer" in message
    assert "`num_workers`" in message and "`batch_size`" in message
    assert f"txkit train --resume {tmp_path / 'run'}" in message and "epoch 1, is intact" in message
    marker.unlink()
    monkeypatch.setattr(Trainer, "commit_epoch", original_commit)
    _, summary = session.resume(str(tmp_path / "run"))
    assert summary["status"] == "completed" and summary["epochs_run"] == 2


def test_a_killed_worker_at_the_cli_is_one_line_without_txkit_bug(tmp_path, monkeypatch):
    def killed(self, epoch, progress, task):
        raise RuntimeError(KILLED)
    monkeypatch.setattr(Trainer, "train_epoch", killed)
    result = cli("train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "worker", "--num-workers", "--batch-size", "--resume")
    no_bug(result)


@pytest.mark.parametrize("error", [
    MemoryError("Unable to allocate 14.1 GiB for an array with shape (60000, 60000)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 14745600000 bytes. Error code 12 (Cannot allocate memory)"),
])
def test_memory_exhausted_while_a_batch_is_made_is_one_line(tmp_path, monkeypatch, error):
    def allocation_fails(self, indices):
        raise error
    monkeypatch.setattr(TensorSplit, "__getitems__", allocation_fails)
    result = cli("train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run"))
    line = assert_one_line_error(result, "out of memory", "--batch-size", "--image-size", "--resume")
    assert type(error).__name__ in line
    no_bug(result)


def test_memory_exhausted_outside_a_run_is_still_one_line(monkeypatch):
    def allocation_fails(cfg, num_classes):
        raise MemoryError()
    monkeypatch.setattr("txkit.training.inspection.inspect_model", allocation_fails)
    result = cli("inspect", "--num-classes", "2")
    assert_one_line_error(result, "out of memory", "--batch-size")
    no_bug(result)


def test_a_library_error_raised_in_a_worker_prints_its_own_line_not_the_workers_traceback(monkeypatch):
    from torch._utils import ExceptionWrapper

    def in_worker(cfg, num_classes):
        try:
            raise DataError("/data/x.png: not an image; remove it or pass `skip_bad_images`")
        except DataError:
            ExceptionWrapper(where="in DataLoader worker process 0").reraise()
    monkeypatch.setattr("txkit.training.inspection.inspect_model", in_worker)
    result = cli("inspect", "--num-classes", "2")
    line = assert_one_line_error(result, "/data/x.png", "--skip-bad-images")
    assert line == "Error: /data/x.png: not an image; remove it or pass --skip-bad-images"


# --- 2. tensorboard, the run folder, names too long -------------------------------------------------------------

def test_a_tensorboard_install_that_fails_with_oserror_is_one_line(tmp_path, monkeypatch):
    broken = types.ModuleType("torch.utils.tensorboard")

    def module_getattr(name):  # what a broken install does at `from torch.utils.tensorboard import SummaryWriter`
        raise OSError("libprotobuf.so.32: cannot open shared object file")
    broken.__getattr__ = module_getattr
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", broken)
    result = cli("train", *TINY, "--epochs", "1", "--log", "tensorboard", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "tensorboard", "OSError", "--log none", "pip install --force-reinstall tensorboard")
    no_bug(result)
    assert not (tmp_path / "run").exists()


def test_a_weights_download_folder_that_cannot_be_made_names_torch_home(tmp_path):
    from txkit.backbones import hub
    from txkit.errors import WeightsError

    blocker = tmp_path / "hub"
    blocker.write_text("a file where TORCH_HOME's folder should be")
    with pytest.raises(WeightsError, match=rf"{blocker / 'checkpoints'}: cannot create the download folder .*"
                                           r"set TORCH_HOME to a writable folder"):
        hub.download("https://example.org/w.pth", blocker / "checkpoints" / "w.pth", what="ImageNet weights")


def test_an_out_name_too_long_for_the_file_system_is_one_line(tmp_path):
    for out in (tmp_path / ("a" * 300), tmp_path / ("a" * 300) / "run"):
        result = cli("train", *TINY, "--epochs", "1", "--out", str(out))
        assert_one_line_error(result, "--out", "File name too long", "choose a shorter --out")
        no_bug(result)


@pytest.mark.parametrize("code, fix", [(errno.EACCES, "choose a folder you may write as --out"),
                                       (errno.EROFS, "choose a folder on a writable file system as --out")])
def test_a_run_folder_that_cannot_be_created_is_one_line(tmp_path, monkeypatch, code, fix):
    original = Path.mkdir

    def refused(self, *args, **kwargs):
        if self.name == "run":
            raise OSError(code, os.strerror(code), str(self))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", refused)
    result = cli("train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--out", str(tmp_path / "run"), os.strerror(code), fix)
    no_bug(result)


def test_an_empty_run_folder_that_refuses_writes_is_one_line_and_is_kept(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".keep").write_text("mine")  # an empty folder may hold dot files: they are not txkit's to delete

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(storage.tempfile, "mkstemp", read_only)
    result = cli("train", *TINY, "--epochs", "1", "--out", str(out))
    assert_one_line_error(result, str(out / "config.json"), "Read-only file system",
                          "choose a writable folder as --out")
    no_bug(result)
    assert sorted(p.name for p in out.iterdir()) == [".keep"] and (out / ".keep").read_text() == "mine"


def test_an_unreadable_out_folder_is_one_line(tmp_path, monkeypatch):
    original = Path.iterdir

    def refused(self):
        if self.name == "run":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self)
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(Path, "iterdir", refused)
    result = cli("train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--out", "Permission denied")
    no_bug(result)


def test_a_machine_oserror_anywhere_names_the_file_and_the_fix_not_a_bug(monkeypatch):
    def refused(cfg, num_classes):
        raise PermissionError(errno.EACCES, "Permission denied", "/opt/models/resnet18.pth")
    monkeypatch.setattr("txkit.training.inspection.inspect_model", refused)
    result = cli("inspect", "--num-classes", "2")
    assert_one_line_error(result, "/opt/models/resnet18.pth", "Permission denied", "choose another path")
    no_bug(result)


# --- experiments: state.json, names too long ---------------------------------------------------------------------

EXPERIMENT = """
[experiment]
name = "tiny"

[defaults]
backbone = "timm/test_resnet"
weights = "none"
epochs = 1
batch_size = 32
device = "cpu"
data_options = { per_class = 3, size = 16 }

[target]
dataset = "synthetic-dld"

[grid]
strategies = ["full"]
"""


@pytest.fixture(scope="module")
def finished_experiment(module_tmp):
    """An experiment of one finished run, made once; tests copy its directory."""
    from txkit.experiments.runner import run_experiment

    folder = module_tmp("experiment")
    spec = folder / "tiny.toml"
    spec.write_text(EXPERIMENT)
    root, counts = run_experiment(spec, folder / "exp", console=quiet()[0])
    assert counts == {"done": 1}
    return spec, root


@pytest.mark.parametrize("name, garbage", [("state.json", '{"runs": {"full-r1-s0'), ("state.json", ""),
                                           ("state.json", '{"runs": [1, 2]}'), ("state.json", "[]"),
                                           ("plan.json", '{"experiment": "tiny", "ru'), ("plan.json", "{}")])
def test_a_damaged_state_or_plan_is_one_line_and_experiment_run_rebuilds_it(finished_experiment, tmp_path,
                                                                            monkeypatch, name, garbage):
    from txkit.experiments.runner import run_experiment

    spec, finished = finished_experiment
    root = tmp_path / "exp"
    shutil.copytree(finished, root)
    (root / name).write_text(garbage)
    for command in ("status", "report"):
        result = cli("experiment", command, str(root))
        assert_one_line_error(result, str(root / name), "txkit experiment run", f"--out {root}")
        no_bug(result)
    trained = []
    monkeypatch.setattr(Trainer, "train_epoch", lambda *a: trained.append(a) or (0.0, 0.0))
    root, counts = run_experiment(spec, root, console=quiet()[0])
    assert counts == {"done": 1} and not trained  # the finished run was found again, not trained again
    assert ExperimentState.load(root).runs  # readable files again
    assert cli("experiment", "status", str(root)).returncode == 0


def test_state_json_is_not_rebuilt_where_only_read(tmp_path):
    (tmp_path / "state.json").write_text("{")
    with pytest.raises(StateError):
        ExperimentState.load(tmp_path)
    assert (tmp_path / "state.json").read_text() == "{"


def test_an_experiment_run_name_too_long_is_one_line_before_anything_trains(tmp_path, monkeypatch):
    spec = tmp_path / "long.toml"
    spec.write_text(EXPERIMENT.replace('strategies = ["full"]',
                                       f'strategies = [{{ name = "{"x" * 260}", strategy = "full" }}]'))
    monkeypatch.setattr(Trainer, "train_epoch", lambda *a: pytest.fail("trained"))
    result = cli("experiment", "run", str(spec), "--out", str(tmp_path / "exp"))
    assert_one_line_error(result, "the name is", "more than the file system", "shorter name")
    no_bug(result)


def test_an_experiment_file_that_is_not_text_is_one_line(tmp_path):
    spec = tmp_path / "binary.toml"
    spec.write_bytes(b"\xff\xfe[experiment]\n")
    result = cli("experiment", "run", str(spec))
    assert_one_line_error(result, str(spec), "not UTF-8 text")
    no_bug(result)


# --- 3. the crash report goes where the cache is configured ------------------------------------------------------

@pytest.mark.parametrize("where", ["env", "option"])
def test_the_crash_report_goes_under_the_configured_cache_folder(tmp_path, monkeypatch, where):
    def buggy(*args, **kwargs):
        return {}["missing"]
    monkeypatch.setattr(session, "train", buggy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TXKIT_CACHE_DIR", str(tmp_path / "env"))
    extra = ["--cache-dir", str(tmp_path / "option")] if where == "option" else []
    result = cli("train", *TINY, "--epochs", "1", *extra)
    line = assert_one_line_error(result, "KeyError", "txkit bug")
    report = next((tmp_path / where / "crashes").glob("txkit-crash-*.txt"))
    assert str(report) in line and "KeyError" in report.read_text()
    assert not (tmp_path / "xdg").exists() and (where == "env" or not (tmp_path / "env").exists())


def test_the_crash_report_of_data_cache_honours_its_cache_dir(tmp_path, monkeypatch):
    def buggy(*args, **kwargs):
        return {}["missing"]
    monkeypatch.setattr("txkit.data.cache.list_caches", buggy)
    monkeypatch.delenv("TXKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    result = cli("data", "cache", "--list", "--cache-dir", str(tmp_path / "mine"))
    line = assert_one_line_error(result, "txkit bug")
    assert str(tmp_path / "mine" / "crashes") in line
