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
    console, out = quiet()
    on_dir, on = session.train(cfg, tmp_path / "on", console)
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


