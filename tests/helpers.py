"""Helpers shared by the core tests (importable because pytest's pythonpath includes tests/)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PNEUMONIAMNIST = SHARED_DATA / "pneumoniamnist.npz"



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


def pythonpath(site: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def copy_with(source: Path, target: Path, **tags) -> Path:
    """A copy of the DICOM file ``source`` at ``target`` with the given header tags changed."""
    import pydicom

    ds = pydicom.dcmread(source)
    for key, value in tags.items():
        setattr(ds, key, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target
