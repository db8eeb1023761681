"""RunDir: every file of a run directory, written and read back in one place (no torch import).

A run directory holds ``config.json`` (the TrainConfig as given, the resolved values, versions, plugins),
``model.safetensors`` (the best checkpoint), ``metrics.jsonl`` / ``metrics.csv`` (one line per committed
epoch), ``summary.json``, the resumable state ``checkpoint.safetensors`` + ``checkpoint.json``, and, once
a run finished, ``predictions_test.npz`` (labels, logits, image ids and resampling groups, so reports and
statistics need no model: plain numpy, no pickles). ``calibration.json`` (txkit calibrate) and
``thresholds.json`` (``txkit evaluate --threshold``: per-class decision thresholds chosen on the val split, read
by ``txkit predict``) come later, when asked for.

One process writes a run at a time: a training or a resume holds ``.txkit.lock`` (:class:`RunLock`, an
``flock`` the kernel drops when the process ends, however it ends) and records its pid, host and command
there, so a second writer is refused with the name of the first.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import shlex
import socket
import sys
import time
from pathlib import Path

import numpy as np

from txkit.errors import TxkitError
from txkit.storage import NotARunError, atomic_write_bytes, read_json, read_jsonl, remove_stale_temps, write_json

PREDICTIONS = "predictions_{split}.npz"
METADATA_PREFIX = "metadata:"

REPAIR = "restore it or train the run again"


class RunDir:
    CONFIG = "config.json"
    WEIGHTS = "model.safetensors"
    METRICS = "metrics.jsonl"
    METRICS_CSV = "metrics.csv"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.safetensors"
    CHECKPOINT_STATE = "checkpoint.json"
    CALIBRATION = "calibration.json"
    THRESHOLDS = "thresholds.json"
    CHECKPOINT_PENDING = "checkpoint.safetensors.pending"  # tensors written, not yet committed by checkpoint.json
    LOCK = ".txkit.lock"  # hidden: an --out folder holding only it still counts as empty
    RESOLVED_KEYS = ("num_classes", "classes", "task", "image_size")  # what evaluate, predict, visualize read

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def is_run(self) -> bool:
        return self.file(self.CONFIG).is_file()

    # --- config.json ----------------------------------------------------------------------------------
    def config_json(self) -> dict:
        """The whole config.json, checked; one line when the folder is not a readable run."""
        if not self.path.is_dir():
            raise NotARunError(f"{self.path}: no such run directory; pass the folder a txkit train run wrote")
        path = self.file(self.CONFIG)
        if not path.exists():
            raise NotARunError(f"{path}: not found; {self.path} is not a txkit run directory")
        data = read_json(path, REPAIR)
        resolved = data.get("resolved") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or \
                not isinstance(resolved, dict) or any(key not in resolved for key in self.RESOLVED_KEYS):
            raise NotARunError(f"{path}: incomplete (no config, or resolved lacks one of "
                               f"{', '.join(self.RESOLVED_KEYS)}); {REPAIR}")
        return data

    def config(self):
        """The run's TrainConfig."""
        from txkit.config import TrainConfig

        data = self.config_json()
        try:
            return TrainConfig.from_dict(data["config"])
        except TxkitError as exc:
            raise NotARunError(f"{self.file(self.CONFIG)}: invalid config ({exc}); {REPAIR}") from None

    def resolved(self) -> dict:
        return self.config_json()["resolved"]

    # --- summary and metrics --------------------------------------------------------------------------
    def summary(self) -> dict | None:
        """summary.json, or None when the run has none yet (a damaged one counts as none: it is rewritten)."""
        path = self.file(self.SUMMARY)
        if not path.exists():
            return None
        try:
            summary = read_json(path, "")
        except TxkitError:
            return None
        return summary if isinstance(summary, dict) else None

    def metrics(self) -> list[dict]:
        """The committed per-epoch lines of metrics.jsonl (a torn last line is dropped)."""
        return read_jsonl(self.file(self.METRICS))

    def status(self) -> str | None:
        summary = self.summary()
        return summary.get("status") if summary else None

    # --- one writer at a time -------------------------------------------------------------------------
    def lock(self) -> "RunLock":
        """Take the run for this process (released by :meth:`RunLock.release`, or by the kernel when the process
        ends); :class:`RunBusyError` naming the holder when another live process has it."""
        return RunLock.acquire(self.path)

    def holder(self) -> dict | None:
        """The record (pid, host, command, started) of the live process that holds the run, or None."""
        return RunLock.holder(self.path)

    def record_config(self, cfg, **resolved) -> None:
        """Rewrite the config that config.json records, and the ``resolved`` values given (a resume that turns
        on skip_bad_images, and the image counts that follow)."""
        data = self.config_json()
        write_json(self.file(self.CONFIG), {**data, "config": cfg.to_dict(), "resolved": {**data["resolved"],
                                                                                          **resolved}})

    def remove_interrupted_writes(self) -> list[str]:
        """Delete what a killed write left: temporary files (``.NAME.XXXX.tmp``) and tensors that no
        checkpoint.json commits (a pending file whose token checkpoint.json names is the commit's own, and is
        kept for the resume to complete its rename). Returns the names removed."""
        removed = remove_stale_temps(self.path)
        pending = self.file(self.CHECKPOINT_PENDING)
        if pending.exists() and not self._commits(pending):
            pending.unlink(missing_ok=True)
            removed.append(pending.name)
        return removed

    def _commits(self, pending: Path) -> bool:
        state = self.file(self.CHECKPOINT_STATE)
        try:
            token = json.loads(state.read_text(encoding="utf-8")).get("tensors_token")
        except (OSError, ValueError, AttributeError):
            return False  # no readable checkpoint.json: nothing commits the pending tensors
        return token is not None and _safetensors_metadata(pending).get("token") == token


def _safetensors_metadata(path: Path) -> dict:
    """A .safetensors file's metadata from its header (numpy framework: no torch import); {} when unreadable."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            return fh.metadata() or {}
    except Exception:  # noqa: BLE001 - a torn file has no usable header, whatever the parser raises
        return {}


# --- the run lock ----------------------------------------------------------------------------------------
class RunBusyError(TxkitError):
    """Another live process is training or resuming the run."""


class RunLock:
    """``RUN/.txkit.lock`` held with ``flock`` for the life of one training or resume.

    The kernel releases an flock when its holder ends, SIGKILL included, so a lock file a dead process left is
    simply taken over. Forked children (DataLoader workers) close their copy at once: an orphaned worker must
    not keep the run locked after its parent died. The file records the holder's pid, host and command for the
    refusal message, and is removed on release. Where flock is unavailable (no fcntl, a file system without
    it) the record decides: a live pid on this host holds the run, a dead one is taken over.
    """

    _held: set[int] = set()  # file descriptors this process holds (closed in forked children)
    _fork_hook = False

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd
        self.run = path.parent

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @classmethod
    def acquire(cls, run: Path) -> "RunLock":
        run = Path(run)
        path = run / RunDir.LOCK
        patience = time.monotonic() + 2.0
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as exc:
                raise TxkitError(f"{path}: cannot create the run's lock file ({exc.strerror or exc}); the run "
                                 f"directory must be writable") from None
            try:
                locked = _flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if locked is False:
                os.close(fd)
                record = cls.holder(run, wait=1.0)
                # None: released meanwhile, or another process's holder() probe; a dead pid: its forked child
                # has not closed its copy yet (or is an orphan about to exit)
                if (record is None or record and not _alive(record)) and time.monotonic() < patience:
                    time.sleep(0.05)
                    continue
                raise RunBusyError(busy_message(run, record))
            if locked is None:  # no flock here: the record decides
                record = _read_record(path)
                if record is not None and _alive(record):
                    os.close(fd)
                    raise RunBusyError(busy_message(run, record))
            elif not _same_file(fd, path):  # released (and unlinked) by its holder between open and flock
                os.close(fd)
                continue
            _write_record(fd)
            cls._register(fd)
            return cls(path, fd)

    @classmethod
    def holder(cls, run: Path, wait: float = 0.0) -> dict | None:
        """The record of the live process that holds the run ({} when it has not written one within ``wait``
        seconds), or None when no process holds it. Takes nothing."""
        path = Path(run) / RunDir.LOCK
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            free = _flock(fd, shared=True)  # a shared probe, dropped at once
        finally:
            os.close(fd)
        if free is None:  # no flock here: the record decides
            record = _read_record(path)
            return record if record is not None and _alive(record) else None
        if free:
            return None  # a file a dead process left
        deadline = time.monotonic() + wait  # held: its record is written just after the flock is taken
        record = _read_record(path)
        while record is None and time.monotonic() < deadline:
            time.sleep(0.05)
            record = _read_record(path)
        return record or {}

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        RunLock._held.discard(fd)
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                self.path.unlink()  # while still locked, so no other process takes a file about to vanish
        os.close(fd)  # drops the flock

    @classmethod
    def _register(cls, fd: int) -> None:
        cls._held.add(fd)
        if not cls._fork_hook and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=cls._forget_in_child)
            cls._fork_hook = True

    @classmethod
    def _forget_in_child(cls) -> None:
        # close() only: flock(LOCK_UN) in a child would release the parent's lock as well
        for fd in cls._held:
            with contextlib.suppress(OSError):
                os.close(fd)
        cls._held = set()


def _flock(fd: int, shared: bool = False) -> bool | None:
    """True: locked; False: another process holds it; None: this platform or file system has no flock."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _write_record(fd: int) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": process_command(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode())


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(record: dict) -> bool:
    """Whether the recorded process may still run: a pid on this host that exists (another host: assumed)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() and record.get("host") == socket.gethostname():
        return False
    if record.get("host") != socket.gethostname() or os.name == "nt":  # (Windows' os.kill(pid, 0) is Ctrl-C)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def process_command() -> str:
    """This process's command line as a user typed it (``txkit train ...``, ``python script.py``)."""
    argv = list(sys.argv) or [""]
    program = Path(argv[0])
    if program.name == "__main__.py":  # python -m PACKAGE (txkit's own __main__ reads as the txkit command)
        first = "txkit" if program.parent.name == "txkit" else f"python -m {program.parent.name}"
    else:
        first = {"-c": "python -c", "": "python"}.get(argv[0], program.name)
    return " ".join([first, *map(shlex.quote, argv[1:])])


def busy_message(run: Path, record: dict | None, prefix: str = "") -> str:
    """One line: who writes the run, and the fix."""
    if not record:
        who = "another txkit process"
        stop = "stop it"
    else:
        here = record.get("host") == socket.gethostname()
        who = (f"txkit process {record.get('pid')}{'' if here else ' on ' + str(record.get('host'))} "
               f"({record.get('command')}, since {record.get('started')})")
        stop = f"stop it (kill {record.get('pid')}{'' if here else ' on ' + str(record.get('host'))})"
    return (f"{prefix}{run}: {who} is already training this run; wait for it to finish or {stop}, then run "
            f"this again")


# --- creating a run directory ------------------------------------------------------------------------
def new_run_dir(cfg, out: str | None) -> RunLock:
    """Make the run directory and take its lock (``.run`` is the directory): ``out`` must be new or
    empty and not in another process's hands; without ``out``, a new ``runs/TIMESTAMP-...`` name."""
    if out:
        path = Path(out).expanduser()
        check_new_run_dir(path)
        _mkdir(path, exist_ok=True)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{cfg.dataset}-{cfg.backbone}-{cfg.strategy}")
        base = Path("runs") / f"{stamp}-{slug}"
        path, n = base, 1
        while not _mkdir(path, exist_ok=False):  # made by this process, not one started the same second
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    lock = RunDir(path).lock()
    try:
        _check_empty(path)  # again under the lock: another training may have filled it meanwhile
    except BaseException:
        lock.release()
        raise
    return lock


def _mkdir(path: Path, exist_ok: bool) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        return False
    except OSError as exc:
        raise out_error(path, "cannot create the run directory", exc) from None
    return True


OUT_FIXES = {errno.ENAMETOOLONG: "choose a shorter `out`", errno.EACCES: "choose a folder you may write as `out`",
             errno.EPERM: "choose a folder you may write as `out`",
             errno.EROFS: "choose a folder on a writable file system as `out`",
             errno.ENOSPC: "free space or choose another `out`"}


def out_error(path: Path, doing: str, exc: OSError) -> TxkitError:
    """One line naming `out` for a run directory the file system refuses (a name too long, no permission)."""
    return TxkitError(f"`out` {path}: {doing} ({exc.strerror or exc}); "
                      f"{OUT_FIXES.get(exc.errno, 'choose another `out`')}")


def check_new_run_dir(path: Path) -> None:
    """``--out`` must be a new or empty folder (checked before any work starts)."""
    try:
        holder = RunLock.holder(path, wait=1.0) if path.is_dir() else None
        if holder is None:
            _check_empty(path)
    except OSError as exc:  # a name too long, a folder that may not be read
        raise out_error(path, "cannot be used as a run directory", exc) from None
    if holder is not None:
        raise RunBusyError(busy_message(path, holder, "`out` "))


def _check_empty(path: Path) -> None:
    if (path / RunDir.CONFIG).exists():
        raise TxkitError(f"`out` {path}: already holds a run; pass --resume {path} to continue it or choose "
                         f"another `out`")
    if path.exists() and not path.is_dir():
        raise TxkitError(f"`out` {path}: is a file, not a folder; choose another `out`")
    if path.is_dir() and any(not p.name.startswith(".") for p in path.iterdir()):
        raise TxkitError(f"`out` {path}: folder exists and is not empty (and is not a txkit run); choose a new "
                         f"or empty folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TxkitError(f"`out` {path}: {parent} is a file, not a folder; choose another `out`")
            break


def load_run_config(run_dir: str | Path) -> tuple:
    """The run's TrainConfig and its whole config.json; one line when the folder is not a readable run."""
    run = RunDir(run_dir)
    return run.config(), run.config_json()


# --- stored predictions ------------------------------------------------------------------------------
def predictions_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / PREDICTIONS.format(split=split)


def save_predictions(run_dir: str | Path, split: str, y_true, logits, ids, groups=None,
                     metadata: dict | None = None) -> Path:
    """Write ``predictions_{split}.npz`` atomically: ``y_true`` (int labels, or float with NaN for multilabel),
    ``logits`` (N, C) float32, ``ids``, (when given) ``groups`` and each ``metadata`` column (stored as
    ``metadata:COLUMN``) as fixed-width unicode arrays."""
    y_true, logits = np.asarray(y_true), np.asarray(logits, dtype=np.float32)
    ids = _text(ids)
    if not (len(y_true) == len(logits) == len(ids)):
        raise ValueError(f"{len(y_true)} labels, {len(logits)} logit rows and {len(ids)} ids differ in number")
    arrays = {"y_true": y_true, "logits": logits, "ids": ids}
    if groups is not None:
        arrays["groups"] = _text(groups)
    for column, values in (metadata or {}).items():
        arrays[f"{METADATA_PREFIX}{column}"] = _text(values)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = predictions_path(run_dir, split)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _text(values) -> np.ndarray:
    # str() of every value gives a fixed-width "<U" array; object arrays would need pickles to load.
    return np.array([str(v) for v in values], dtype=str)


def load_predictions(run_dir: str | Path, split: str) -> dict | None:
    """{"y_true", "logits", "ids", "groups" (None when not stored), "metadata" ({} when none), "classes", "task",
    "split"} from the run's ``predictions_{split}.npz`` and config.json, or None when the run stored no
    predictions of that split."""
    path = predictions_path(run_dir, split)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {"y_true": data["y_true"], "logits": data["logits"].astype(np.float64),
                   "ids": [str(i) for i in data["ids"]],
                   "groups": data["groups"] if "groups" in data.files else None,
                   "metadata": {k[len(METADATA_PREFIX):]: data[k] for k in data.files
                                if k.startswith(METADATA_PREFIX)}}
    except (OSError, ValueError, KeyError) as exc:
        raise TxkitError(f"{path}: unreadable ({exc}); delete it and run `txkit evaluate {run_dir}` or train "
                         f"again") from None
    resolved = RunDir(run_dir).resolved()
    return {**out, "classes": list(resolved["classes"]), "task": resolved["task"], "split": split}


# --- calibration.json (txkit calibrate) -----------------------------------------------------------------
def load_calibration(run_dir: str | Path) -> dict | None:
    """The run's calibration.json, or None when it has none."""
    path = Path(run_dir) / RunDir.CALIBRATION
    if not path.exists():
        return None
    fix = f"delete it or fit it again with txkit calibrate {run_dir}"
    data = read_json(path, fix)
    temperature = data.get("temperature") if isinstance(data, dict) else None
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise TxkitError(f"{path}: no positive temperature; {fix}")
    return data


# --- thresholds.json (txkit evaluate --threshold) -------------------------------------------------------------
def save_thresholds(run_dir: str | Path, record: dict) -> Path:
    """Write the run's decision thresholds atomically: {"rule", "fitted_on", "score", "n", "classes": {class:
    {"threshold", ...}}} (txkit.run.thresholds makes the record)."""
    path = Path(run_dir) / RunDir.THRESHOLDS
    write_json(path, record)
    return path


def load_thresholds(run_dir: str | Path) -> dict | None:
    """The run's thresholds.json, checked against its classes, or None when it has none."""
    path = Path(run_dir) / RunDir.THRESHOLDS
    if not path.exists():
        return None
    fix = f"delete it or choose them again with txkit evaluate {run_dir} --threshold youden"
    data = read_json(path, fix)
    classes = RunDir(run_dir).resolved()["classes"]
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or sorted(entries) != sorted(classes) or not all(
            isinstance(e, dict) and isinstance(e.get("threshold"), (int, float)) and not isinstance(
                e.get("threshold"), bool) for e in entries.values()):
        raise TxkitError(f"{path}: not a threshold per class of the run ({', '.join(classes)}); {fix}")
    return data
