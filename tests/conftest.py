import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PNEUMONIAMNIST = SHARED_DATA / "pneumoniamnist.npz"

os.environ.setdefault("MPLBACKEND", "Agg")


def run_txkit(*args, env=None, cwd=None, timeout=600):
    """Run the real `txkit` console entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", "from txkit.cli.main import main; main()", *args],
                          capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def make_distribution(site: Path, name: str, module: str, source: str, version: str = "0.1") -> None:
    """Create an installed-looking distribution (dist-info + module) under ``site``."""
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[txkit]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path):
    """A directory to hold fake plugin distributions; pass ``env=pythonpath(site)`` to run_txkit."""
    path = tmp_path / "site"
    path.mkdir()
    return path


def pythonpath(site: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def tiny_cfg():
    """A training config that runs in seconds on CPU: tiny synthetic set, resnet18 at 32 px, no downloads."""
    from txkit.training.config import TrainConfig

    def make(**overrides):
        base = dict(dataset="synthetic-dld", data_options={"per_class": "6", "size": "32"}, backbone="resnet18",
                    weights="none", strategy="full", epochs=3, batch_size=16, seed=0, device="cpu")
        base.update(overrides)
        return TrainConfig(**base)
    return make
