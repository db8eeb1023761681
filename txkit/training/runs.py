"""Run directories: creation, the recorded environment, and loading a finished run back."""

from __future__ import annotations

import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path

from txkit import __version__
from txkit.errors import TxkitError
from txkit.rundir import RunDir
from txkit.config import TrainConfig

CONFIG, WEIGHTS, METRICS, SUMMARY = RunDir.CONFIG, RunDir.WEIGHTS, RunDir.METRICS, RunDir.SUMMARY
CHECKPOINT, CHECKPOINT_STATE = RunDir.CHECKPOINT, RunDir.CHECKPOINT_STATE


def new_run_dir(cfg: TrainConfig, out: str | None) -> Path:
    if out:
        path = Path(out).expanduser()
        check_new_run_dir(path)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{cfg.dataset}-{cfg.backbone}-{cfg.strategy}")
        base = Path("runs") / f"{stamp}-{slug}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TxkitError(f"`out` {path}: cannot create the run directory ({exc.strerror or exc}); choose "
                         f"another `out`") from None
    return path


def check_new_run_dir(path: Path) -> None:
    """``--out`` must be a new or empty folder (checked before any work starts)."""
    if (path / CONFIG).exists():
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


def environment() -> dict:
    from txkit.plugins import get_plugins

    versions = {"txkit": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "timm", "numpy", "scikit-learn", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    from txkit.training import distributed

    plugins = {p.distribution: p.version for p in get_plugins().plugins.values()}
    return {"versions": versions, "plugins": plugins, "git_commit": _git_commit(),
            "platform": platform.platform(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "distributed": distributed.record()}  # world size and gradient backend (torchrun)


def _git_commit() -> str | None:
    source = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_run_config(run_dir: str | Path) -> tuple[TrainConfig, dict]:
    """The run's TrainConfig and its whole config.json; one line when the folder is not a readable run."""
    run = RunDir(run_dir)
    return run.config(), run.config_json()


def read_summary(run_dir: str | Path) -> dict | None:
    return RunDir(run_dir).summary()
