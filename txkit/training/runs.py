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
from txkit.training.checkpoint import read_json, restore_floats
from txkit.training.config import TrainConfig

CONFIG, WEIGHTS, METRICS, SUMMARY = "config.json", "model.safetensors", "metrics.jsonl", "summary.json"
CHECKPOINT, CHECKPOINT_STATE = "checkpoint.safetensors", "checkpoint.json"


def new_run_dir(cfg: TrainConfig, out: str | None) -> Path:
    if out:
        path = Path(out)
        if (path / CONFIG).exists():
            raise TxkitError(f"{path} already holds a run; pass --resume {path} to continue it or choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{cfg.dataset}-{cfg.backbone}-{cfg.strategy}")
    base = Path("runs") / f"{stamp}-{slug}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def environment() -> dict:
    from txkit.plugins import get_plugins

    versions = {"txkit": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "timm", "numpy", "scikit-learn", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    plugins = {p.distribution: p.version for p in get_plugins().plugins.values()}
    return {"versions": versions, "plugins": plugins, "git_commit": _git_commit(),
            "platform": platform.platform(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _git_commit() -> str | None:
    source = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_run_config(run_dir: str | Path) -> tuple[TrainConfig, dict]:
    run = Path(run_dir)
    path = run / CONFIG
    if not path.exists():
        raise TxkitError(f"{path}: not found; {run} is not a txkit run directory")
    data = restore_floats(read_json(path))
    return TrainConfig.from_dict(data["config"]), data
