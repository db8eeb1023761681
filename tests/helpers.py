"""Helpers shared by the core tests (importable because pytest's pythonpath includes tests/)."""

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PNEUMONIAMNIST = SHARED_DATA / "pneumoniamnist.npz"
TINY_EXPERIMENT = Path(__file__).resolve().parent / "data" / "tiny_experiment.toml"



def tiny_config(**overrides):
    """A training config that runs in seconds on CPU: tiny synthetic set, resnet18 at 32 px, no downloads."""
    from txkit.config import TrainConfig

    base = dict(dataset="synthetic-dld", data_options={"per_class": "6", "size": "32"}, backbone="resnet18",
                weights="none", strategy="full", epochs=3, batch_size=16, seed=0, device="cpu")
    return TrainConfig(**{**base, **overrides})


def image_folders(root, bad=None, per_split=(("train", 8), ("val", 3), ("test", 3))):
    """An imagefolder dataset: train/ val/ test/ with classes a and b (32 px noise PNGs, ``per_split`` images per
    class); ``bad``, a path under ``root``, is overwritten with junk. Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_split:
        for name in ("a", "b"):
            for i in range(n):
                path = Path(root) / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
    if bad is not None:
        (Path(root) / bad).write_bytes(b"not an image")
    return Path(root)


def run_txkit(*args, env=None, cwd=None, timeout=600):
    """Run the real `txkit` entry point (``txkit.cli.main:main``) in a new process; a CompletedProcess.

    The process is forked from a server that has already imported torch, torchvision and timm (multiprocessing's
    forkserver), because importing them costs about 7 s per process on the 2-core CI machine and the suite starts
    the CLI about a hundred times. The child gets the given environment, working directory and arguments and its
    own stdout and stderr, and exits with the CLI's code; a computation never runs in the server, so each child
    starts as clean as a new interpreter. Calls that change ``PYTHONPATH`` (fake plugin distributions) and every
    call when ``TXKIT_TESTS_SUBPROCESS=1`` start a plain interpreter instead."""
    full_env = {**os.environ, **(env or {})}
    if "PYTHONPATH" in (env or {}) or os.environ.get("TXKIT_TESTS_SUBPROCESS") == "1":
        return subprocess.run([sys.executable, "-c", "from txkit.cli.main import main; main()", *args],
                              capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)
    return _forked_cli(list(args), full_env, cwd, timeout)


_PRELOAD = ["torch", "torchvision", "timm", "numpy", "PIL.Image", "safetensors.torch", "sklearn.metrics"]
_forkserver = None


def _forked_cli(args, env, cwd, timeout):
    import multiprocessing
    import tempfile

    global _forkserver
    if _forkserver is None:
        _forkserver = multiprocessing.get_context("forkserver")
        _forkserver.set_forkserver_preload(_PRELOAD)
    with tempfile.TemporaryDirectory(prefix="txkit-cli-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        child = _forkserver.Process(target=_cli_child, args=(args, env, None if cwd is None else str(cwd),
                                                             str(out), str(err)))
        runner_main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")  # else each child would re-run the test runner's
        try:
            child.start()
        finally:
            sys.modules["__main__"] = runner_main
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(["txkit", *args], timeout)
        read = lambda path: path.read_text(errors="replace") if path.exists() else ""  # noqa: E731
        return subprocess.CompletedProcess(["txkit", *args], child.exitcode, read(out), read(err))


def _cli_child(args, env, cwd, out, err):
    """In the forked child: become ``txkit ARGS`` run from a shell, then exit as that process would."""
    import atexit

    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    sys.argv = ["txkit", *args]
    code = 0
    try:
        from txkit.cli.main import main

        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:  # what the interpreter does with an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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


def write_experiment(folder, body: str = "", *, file: str = "tiny.toml", name: str | None = None, **defaults):
    """The suite's tiny experiment (tests/data/tiny_experiment.toml) written to ``folder/file`` with ``body``
    (more tables: [grid], [stages.x], [report] ...) appended; ``name`` and ``defaults`` replace its values."""
    text = TINY_EXPERIMENT.read_text()
    if name is not None:
        text = text.replace('name = "tiny"', f"name = {_toml(name)}", 1)
    for key, value in defaults.items():
        line = f"{key} = {_toml(value)}"
        lines = text.splitlines()
        start = lines.index("[defaults]")
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("["))
        hits = [i for i in range(start, end) if lines[i].split(" = ")[0] == key]
        if hits:
            lines[hits[0]] = line
        else:
            lines.insert(end - 1, line)
        text = "\n".join(lines) + "\n"
    path = Path(folder) / file
    path.write_text(text + textwrap.dedent(body))
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
