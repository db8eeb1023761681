"""One public face: ``txkit`` (and ``txkit.testing`` for tests) is the whole API a plugin uses (issue 12, item 5).

- Every .py of the bundled plugins (plugins/*/) and of the plugin template (examples/txkit-plugin-template/)
  imports txkit only as ``txkit``; their tests/ folders import only ``txkit`` and ``txkit.testing``. Every name
  imported must be exported (``__all__``) and listed in the "Public API" section of docs/plugins.md. Strings
  count too: factory and options strings (``"txkit:NoOptions"``) and code run in a subprocess.
- Every name of ``txkit.__all__`` and ``txkit.testing.__all__`` resolves, to the object its defining module
  holds, and is documented; ``import txkit`` imports no torch.
- ``TrainConfig`` has one import path (``txkit.config``, also ``txkit.TrainConfig``).
- The helpers of ``txkit.testing`` do what they say, and fail where they should.

build/ folders are setuptools copies of the sources and are skipped.
"""

import ast
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import txkit
from txkit import testing

ROOT = Path(__file__).resolve().parents[1]
SOURCE_MODULES = {"txkit"}
TEST_MODULES = {"txkit", "txkit.testing"}
SKIPPED_DIRS = {"build", "__pycache__"}
# A string naming a txkit submodule: "txkit.options:NoOptions" (a factory or options string), or
# "from txkit.plugins import registry" (code run in a subprocess).
MODULE_STRING = re.compile(r"\btxkit\.[a-z_][a-z0-9_.]*:|\bfrom\s+txkit\.[a-z_][\w.]*\s+import\b|"
                           r"\bimport\s+txkit\.[a-z_][\w.]*")


def plugin_roots() -> list[Path]:
    roots = sorted(p for p in (ROOT / "plugins").iterdir() if p.is_dir())
    return roots + [ROOT / "examples" / "txkit-plugin-template"]


def python_files(tests: bool) -> list[Path]:
    """The plugins' and the template's sources (``tests=False``) or the files of their tests/ folders."""
    files = []
    for root in plugin_roots():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).parts[:-1]
            if SKIPPED_DIRS.intersection(parts) or any(p.endswith(".egg-info") for p in parts):
                continue
            if ("tests" in parts) == tests:
                files.append(path)
    return files


def txkit_imports(tree: ast.AST) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None for ``import module``) of each import of txkit or a submodule."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names
                      if alias.name == "txkit" or alias.name.startswith("txkit.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "txkit" or node.module.startswith("txkit.")):
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


def module_strings(tree: ast.AST, allowed: set[str]) -> list[tuple[int, str]]:
    """(line, text) of string constants that name a txkit submodule other than ``allowed`` ones."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in MODULE_STRING.finditer(node.value):
                module = re.search(r"txkit\.[\w.]*", match.group(0)).group(0).rstrip(".")
                if module not in allowed:
                    found.append((node.lineno, match.group(0)))
    return found


def public_api_section() -> str:
    text = (ROOT / "docs" / "plugins.md").read_text()
    match = re.search(r"^## Public API\b.*?(?=^## |\Z)", text, flags=re.M | re.S)
    return match.group(0) if match else ""


def documented_names() -> set[str]:
    """Identifiers in backticks in docs/plugins.md's "## Public API" section (up to the next ## heading)."""
    names = set()
    for quoted in re.findall(r"`([^`\n]+)`", public_api_section()):
        names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", quoted))
    return names


EXPORTS = {"txkit": set(txkit.__all__), "txkit.testing": set(testing.__all__)}
SOURCES = python_files(tests=False)
TESTS = python_files(tests=True)


def import_problems(path: Path, allowed: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    documented = documented_names()
    problems = []
    for line, module, name in txkit_imports(tree):
        where = f"{shown}:{line}"
        if name is not None and f"{module}.{name}" in allowed:
            continue  # `from txkit import testing`
        if module not in allowed:
            problems.append(f"{where}: imports {module}{'.' + name if name else ''}; import only from "
                            f"{' and '.join(sorted(allowed))}")
        elif name == "*":
            problems.append(f"{where}: star import from {module}")
        elif name is not None and name not in EXPORTS[module]:
            problems.append(f"{where}: {module} does not export {name}")
        elif name is not None and name not in documented:
            problems.append(f"{where}: {module}.{name} is not listed in docs/plugins.md's Public API section")
    for line, text in module_strings(tree, allowed):
        problems.append(f"{shown}:{line}: the string {text!r} names a txkit submodule; "
                        f"use {' or '.join(sorted(allowed))} (e.g. \"txkit:NoOptions\", \"from txkit import ...\")")
    return problems


def test_the_plugins_the_template_and_their_tests_are_found():
    names = {p.relative_to(ROOT).parts[1] for p in SOURCES}
    assert {"txkit-desalinet", "txkit-gradcam", "txkit-plugin-template"} <= names, names
    tested = {p.relative_to(ROOT).parts[1] for p in TESTS}
    assert tested == {root.name for root in plugin_roots()}, tested


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_plugin_code_imports_only_txkit(path):
    problems = import_problems(path, SOURCE_MODULES)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", TESTS, ids=[str(p.relative_to(ROOT)) for p in TESTS])
def test_plugin_tests_import_only_txkit_and_txkit_testing(path):
    problems = import_problems(path, TEST_MODULES)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_internal_imports_and_strings(tmp_path):
    """The checks above fail on what they are meant to refuse (else they could pass by checking nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from txkit.plugins import create\nimport txkit.network\nfrom txkit import Registry\n"
                   "from txkit import *\nfrom txkit.testing import check_dataset\n"
                   "OPTIONS = 'txkit.options:NoOptions'\nCODE = 'import sys; from txkit.plugins import registry'\n")
    sources, tests = import_problems(bad, SOURCE_MODULES), import_problems(bad, TEST_MODULES)
    for expected in ("imports txkit.plugins.create", "imports txkit.network", "does not export Registry",
                     "star import", "'txkit.options:'", "'from txkit.plugins import'"):
        assert any(expected in p for p in sources) and any(expected in p for p in tests), (expected, sources)
    assert any("imports txkit.testing.check_dataset" in p for p in sources)  # plugin code: not even txkit.testing
    assert not any("check_dataset" in p for p in tests)  # tests may import txkit.testing


def test_every_exported_name_resolves_to_its_defining_modules_object():
    for name in txkit.__all__:
        value = getattr(txkit, name)
        assert value is not None, name
    for name, module in txkit._EXPORTS.items():
        assert getattr(txkit, name) is getattr(importlib.import_module(module), name), name
    assert txkit.testing is importlib.import_module("txkit.testing")
    for name in testing.__all__:
        assert getattr(testing, name) is not None, name


def test_no_submodule_shadows_an_exported_name():
    """``txkit.registry`` stays the lookup function after every submodule, txkit/registry.py included, is imported."""
    for found in pkgutil.walk_packages(txkit.__path__, "txkit."):
        if not found.name.endswith("__main__"):
            importlib.import_module(found.name)
    from txkit.registry import KINDS  # noqa: F401 - the submodule is still importable by its path
    from txkit.plugins import registry

    assert txkit.registry is registry and callable(txkit.registry)
    assert txkit.registry("dataset").get("synthetic-dld").provided_by == "txkit"
    for name in txkit.__all__:
        value = getattr(txkit, name)
        assert name == "testing" or not isinstance(value, type(txkit)), f"txkit.{name} is a module: {value}"


def test_import_txkit_imports_no_torch():
    code = ("import sys, json, txkit; bare = sorted(m for m in ('torch', 'numpy') if m in sys.modules); "
            "txkit.testing; txkit.Options; txkit.DataError; txkit.Visualizer; txkit.TrainConfig; "
            "txkit.registry('dataset'); txkit.TxDataset; txkit.file_split; "
            "print(json.dumps([bare, 'torch' in sys.modules]))")
    env = {**os.environ, "TXKIT_PLUGINS": "none"}  # plugins' own imports are each plugin's tests' business
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    bare, torch_after_light_names = json.loads(out.stdout)
    assert bare == [], f"`import txkit` imported {bare}"
    assert torch_after_light_names is False  # the contract names a hook module uses load no torch either


def test_every_exported_name_is_documented():
    documented = documented_names()
    assert "Public API" in public_api_section()
    for module, names in EXPORTS.items():
        missing = sorted(names - documented)
        assert not missing, f"{module} exports {missing}, which docs/plugins.md's Public API section does not list"


def test_the_visualizer_facade_exports_what_its_docs_list():
    """Each name of ``txkit.visualizers.__all__`` (the pipeline's module for scripts) is documented and importable."""
    import txkit.visualizers as facade

    documented = documented_names()
    missing = [name for name in facade.__all__ if name not in documented]
    assert not missing, f"txkit.visualizers exports {missing} but docs/plugins.md's Public API does not list them"
    for name in facade.__all__:
        assert getattr(facade, name) is not None


def test_train_config_has_one_import_path():
    from txkit.config import TrainConfig

    old = "txkit.training" + ".config"  # spelt in two parts, so that this file does not name it
    assert txkit.TrainConfig is TrainConfig
    assert importlib.util.find_spec(old) is None
    users = [str(path.relative_to(ROOT)) for folder in ("txkit", "tests", "plugins", "bench", "examples", "docs")
             for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".md", ".toml")
             and "build" not in path.relative_to(ROOT).parts and old in path.read_text()]
    assert not users, f"{old} is gone; import TrainConfig from txkit.config (or txkit): {users}"


# --- the contract classes ----------------------------------------------------------------------------------------

def test_a_colorizer_with_a_misspelt_attribute_is_refused_when_its_class_is_defined():
    with pytest.raises(TypeError, match=r"Bad.output_kind = 'units'; it must be one of 'unit', 'learned'"):
        type("Bad", (txkit.Colorizer,), {"output_kind": "units"})
    with pytest.raises(TypeError, match=r"input_units = 'hu'"):
        type("Bad", (txkit.Colorizer,), {"input_units": "hu"})
    fixed = type("Fixed", (txkit.Colorizer,), {"output_kind": "unit", "input_units": property(lambda self: "HU")})
    assert fixed().output_kind == "unit" and fixed().input_units == "HU"
    assert (txkit.Colorizer.output_kind, txkit.Colorizer.input_units) == ("learned", "unit")  # what txkit assumes


# --- txkit.testing -----------------------------------------------------------------------------------------------

def test_tiny_config_is_fast_and_a_named_dataset_gets_its_own_options():
    cfg = testing.tiny_config()
    assert (cfg.dataset, cfg.backbone, cfg.weights, cfg.epochs, cfg.device) == ("synthetic-dld", "resnet18", "none", 1,
                                                                                "cpu")
    assert cfg.data_options == {"per_class": "6", "size": "32"} and cfg.image_size is None
    other = testing.tiny_config(dataset="imagefolder", data_root="x", batch_size=4)
    assert other.data_options == {} and other.image_size == 32 and other.batch_size == 4
    assert testing.tiny_config(dataset="imagefolder", image_size=48).image_size == 48
    with pytest.raises(txkit.ConfigError, match="`epochs`"):
        testing.tiny_config(epochs=0)


def test_write_image_writes_what_txkit_reads(tmp_path):
    ramp = testing.write_image(tmp_path / "a" / "ramp.png")
    assert ramp.exists() and txkit.load_gray(ramp).shape == (20, 24) and txkit.load_gray(ramp).max() == 255
    wide = testing.write_image(tmp_path / "wide.png", np.full((4, 5), 65535, np.uint16))
    assert (txkit.load_gray(wide) == 255).all()  # 16 bits scaled, not clipped
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 200
    assert txkit.load_gray(testing.write_image(tmp_path / "rgb.png", rgb)).max() == round(0.587 * 200)  # luminance
    cut = testing.write_image(tmp_path / "cut.png", truncate=True)
    with pytest.raises(txkit.DataError, match="unreadable or truncated"):
        txkit.load_gray(cut)
    with pytest.raises(TypeError, match="int64"):
        testing.write_image(tmp_path / "bad.png", np.zeros((4, 4), np.int64))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return testing.write_image_folder(tmp_path_factory.mktemp("folder") / "images", classes=("a", "b", "c"),
                                      per_class=5, size=16)


def test_check_dataset_accepts_a_file_backed_and_an_in_memory_dataset(folder):
    files = txkit.create("dataset", "imagefolder", root=str(folder))
    assert testing.check_dataset(files, file_backed=True) is files
    assert files.classes == ["a", "b", "c"] and sum(len(s) for s in files.splits.values()) == 15
    memory = testing.check_dataset(txkit.create("dataset", "synthetic-dld", per_class="4", size="16"),
                                   file_backed=False)
    with pytest.raises(AssertionError, match="no sources; build a split of image files with txkit.file_split"):
        testing.check_dataset(memory, file_backed=True)
    with pytest.raises(AssertionError, match="has sources, expected an in-memory split"):
        testing.check_dataset(files, file_backed=False)


def small_dataset(task="multiclass", labels=None, image=None, **split_kwargs):
    labels = np.array([0, 1, 0]) if labels is None else labels
    image = np.zeros((6, 5), np.uint8) if image is None else image
    split = txkit.Split(lambda i: image, labels, **split_kwargs)
    return txkit.TxDataset("probe", ["no", "yes"], {"train": split}, task=task)


@pytest.mark.parametrize("dataset, message", [
    (lambda: small_dataset(labels=np.array([0, 2, 1])), r"probe train: labels outside 0\.\.1"),
    (lambda: small_dataset(labels=np.array([0.0, 1.0, 0.0])), "multiclass labels are N integers"),
    (lambda: small_dataset("multilabel", labels=np.ones((3, 3), np.float32)), r"multilabel labels are \(N, 2\)"),
    (lambda: small_dataset("multilabel", labels=np.full((3, 2), 2.0)), r"labels outside \[0, 1\]"),
    (lambda: small_dataset(image=np.zeros((6, 5, 3), np.uint8)), "non-empty 2-D uint8"),
    (lambda: small_dataset(image=np.zeros((6, 5), np.float32)), "non-empty 2-D uint8"),
    (lambda: small_dataset(groups=["p1", "p2"]), "2 groups for 3 images"),
    (lambda: txkit.TxDataset("probe", ["no"], {"val": small_dataset().splits["train"]}), "a dataset has train"),
    (lambda: txkit.TxDataset("probe", ["a", "a"], {"train": small_dataset().splits["train"]}), "class names repeat"),
    (lambda: small_dataset(task="regression"), "is not multiclass/multilabel"),
])
def test_check_dataset_names_what_breaks_the_contract(dataset, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_dataset(dataset())


def test_check_dataset_wants_file_backed_splits_read_through_the_intensity_reader(folder, tmp_path):
    files = sorted(folder.rglob("*.png"))[:3]
    read_elsewhere = small_dataset(sources=[str(f) for f in files])  # sources, but the pixels come from `load`
    with pytest.raises(AssertionError, match="must read its files with the intensity reader"):
        testing.check_dataset(read_elsewhere)
    gone = tmp_path / "gone.png"
    with pytest.raises(AssertionError, match="1 sources are not files, e.g. .*gone.png"):
        testing.check_dataset(small_dataset(sources=[str(files[0]), str(files[1]), str(gone)]))
    split = txkit.file_split([str(f) for f in files], np.array([0, 1, 0]))
    testing.check_dataset(txkit.TxDataset("probe", ["no", "yes"], {"train": split}), file_backed=True)


def test_data_info_is_the_report_of_txkit_data_info(folder):
    report = testing.data_info(txkit.create("dataset", "imagefolder", root=str(folder)), sample=2)
    code, output, errors = testing.run_cli(["data", "info", "imagefolder", "--data-root", folder, "--sample", "2",
                                            "--json"])
    assert code == 0, errors
    assert json.loads(output) == json.loads(json.dumps(report))
    assert sum(split["images"] for split in report["splits"].values()) == 15


def test_run_cli_gives_the_exit_code_stdout_and_stderr_apart():
    code, output, errors = testing.run_cli(["list", "datasets", "--json"])
    assert code == 0 and errors == ""
    assert "imagefolder" in {entry["name"] for entry in json.loads(output)}
    result = testing.run_cli("train --dataset no-such-dataset")
    assert result.exit_code == 1 and result.output == ""
    assert result.errors.startswith("Error: no dataset named 'no-such-dataset'")


def test_train_tiny_trains_one_epoch_into_the_folder(folder, tmp_path):
    run = testing.train_tiny(tmp_path / "run", dataset="imagefolder", data_root=str(folder))
    assert isinstance(run, txkit.Run) and run.path == tmp_path / "run"
    assert run.summary["status"] == "completed" and len(run.metrics) == 1
    assert run.resolved["classes"] == ["a", "b", "c"] and run.resolved["image_size"] == 32
