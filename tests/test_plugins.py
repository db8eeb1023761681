"""The plugin system: built-ins through entry points, third-party plugins, guards, conflicts, filters."""

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, make_distribution, pythonpath, run_txkit

from txkit.registry import KINDS

GOOD_PLUGIN = """
from txkit import hookimpl

@hookimpl
def register_colorizers(register):
    register("pixelshuffle", "txkit.colorizers.factories:repeat", "a clashing name")
    register("inverted", "txkit.colorizers.factories:repeat", "a plugin colorizer")
"""


def list_json(env=None):
    result = run_txkit("list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_json_has_every_kind_of_builtin():
    entries = list_json()
    assert all(set(e) == {"kind", "name", "description", "provided_by"} for e in entries)
    builtin_kinds = {e["kind"] for e in entries if e["provided_by"] == "txkit"}
    assert builtin_kinds == set(KINDS)
    names = {(e["kind"], e["name"]) for e in entries}
    for expected in [("backbone", "efficientnet_lite0"), ("colorizer", "pixelshuffle"), ("dataset", "synthetic-dld"),
                     ("strategy", "last-layer"), ("visualizer", "saliency")]:
        assert expected in names


def test_list_of_one_kind_accepts_singular_and_plural():
    for arg in ("strategy", "strategies"):
        result = run_txkit("list", arg, "--json")
        assert {e["kind"] for e in json.loads(result.stdout)} == {"strategy"}


def test_plugin_that_fails_to_import_is_reported_and_cli_keeps_working(site):
    make_distribution(site, "txkit-broken", "txkit_broken", "raise RuntimeError('boom at import')\n")
    entries = list_json(pythonpath(site))
    assert any(e["name"] == "synthetic-dld" for e in entries)
    plugins = json.loads(run_txkit("plugins", "--json", env=pythonpath(site)).stdout)
    broken = next(p for p in plugins if p["name"] == "txkit-broken")
    assert "RuntimeError: boom at import" in broken["errors"][0]


def test_plugin_that_raises_in_a_hook_keeps_the_others(site):
    make_distribution(site, "txkit-badhook", "txkit_badhook", """
        from txkit import hookimpl

        @hookimpl
        def register_datasets(register):
            register("half-registered", "x:y", "registered before the error")
            raise ValueError("hook exploded")
    """)
    make_distribution(site, "txkit-good", "txkit_good", GOOD_PLUGIN.replace('"pixelshuffle"', '"other"'))
    entries = list_json(pythonpath(site))
    assert any(e["name"] == "inverted" and e["provided_by"] == "txkit-good" for e in entries)
    plugins = json.loads(run_txkit("plugins", "--json", env=pythonpath(site)).stdout)
    bad = next(p for p in plugins if p["name"] == "txkit-badhook")
    assert any("ValueError: hook exploded" in e for e in bad["errors"])
    assert bad["hooks"] == ["register_datasets"]
    assert not any(e["name"] == "half-registered" for e in entries)


def test_duplicate_names_report_both_sources_and_neither_wins(site):
    make_distribution(site, "txkit-clash", "txkit_clash", GOOD_PLUGIN)
    entries = list_json(pythonpath(site))
    sources = sorted(e["provided_by"] for e in entries if e["kind"] == "colorizer" and e["name"] == "pixelshuffle")
    assert sources == ["txkit", "txkit-clash"]
    result = run_txkit("train", "--colorizer", "pixelshuffle", env=pythonpath(site))
    assert result.returncode == 1
    assert "registered by both 'txkit' and 'txkit-clash'" in result.stderr
    plugins = json.loads(run_txkit("plugins", "--json", env=pythonpath(site)).stdout)
    clash = next(p for p in plugins if p["name"] == "txkit-clash")
    assert any("also registered by txkit" in e for e in clash["errors"])


def test_txkit_plugins_env_limits_what_loads(site):
    make_distribution(site, "txkit-clash", "txkit_clash", GOOD_PLUGIN)
    make_distribution(site, "txkit-broken", "txkit_broken", "raise RuntimeError('boom')\n")
    for value, expect_clash, expect_broken in (("none", False, False), ("txkit-clash", True, False),
                                               ("txkit-broken", False, True)):
        env = {**pythonpath(site), "TXKIT_PLUGINS": value}
        names = {p["name"] for p in json.loads(run_txkit("plugins", "--json", env=env).stdout)}
        assert "txkit" in names
        assert ("txkit-clash" in names) == expect_clash
        assert ("txkit-broken" in names) == expect_broken


def test_unknown_name_suggests_the_closest_and_exits_nonzero():
    result = run_txkit("train", "--colorizer", "pixelshufle")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: no colorizer named 'pixelshufle'; did you mean 'pixelshuffle'?"
    assert "Traceback" not in result.stderr


def test_version_and_help():
    assert run_txkit("--version").stdout.strip() == "txkit, version 0.1.0"
    for command in ("list", "plugins", "train", "evaluate", "predict", "inspect"):
        result = run_txkit(command, "--help")
        assert result.returncode == 0 and "Usage: txkit" in result.stdout


def test_listing_never_imports_torch():
    code = ("import sys; from txkit.cli.main import main\n"
            "sys.argv = ['txkit', 'list']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().endswith("NO-TORCH")


def test_shell_completion_lists_registered_names():
    env = {"_TXKIT_COMPLETE": "bash_complete", "COMP_WORDS": "txkit train --colorizer pix", "COMP_CWORD": "3"}
    result = run_txkit(env=env)
    assert "pixelshuffle" in result.stdout


def layered_venv(folder):
    """A new venv that also sees this one's packages (txkit, torch, pip) but installs into its own folder, so that
    installing a plugin never changes the environment other tests (or parallel test workers) run in."""
    import os
    import sysconfig
    import venv

    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / ("Scripts" if os.name == "nt" else "bin") / "python"
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    base = sysconfig.get_paths()["purelib"]
    (Path(own) / "_txkit_tests_base.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    return python


def test_template_plugin_installs_lists_and_uninstalls(tmp_path):
    import shutil

    # Installed from a copy: building in the source folder would leave build/ and *.egg-info there.
    source = ROOT / "examples" / "txkit-plugin-template"
    template = tmp_path / "txkit-plugin-template"
    shutil.copytree(source, template, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    before = sorted(p.relative_to(source) for p in source.rglob("*") if "__pycache__" not in p.parts)
    python = layered_venv(tmp_path / "venv")

    def listed():
        result = subprocess.run([python, "-m", "txkit", "list", "--json"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    pip = [python, "-m", "pip", "--disable-pip-version-check", "-q"]
    installed = subprocess.run(pip + ["install", "--no-deps", "--no-build-isolation", str(template)],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    entries = listed()
    assert {"kind": "colorizer", "name": "edges", "provided_by": "txkit-plugin-template",
            "description": "fixed: gray, Sobel gradient magnitude and Laplacian as the three channels"} in entries
    assert any(e["name"] == "stripes" and e["provided_by"] == "txkit-plugin-template" for e in entries)
    assert not any(e["provided_by"] == "txkit-plugin-template" for e in list_json())  # this venv: untouched
    own_tests = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(template / "tests")],
                               capture_output=True, text=True, cwd=tmp_path)
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    subprocess.run(pip + ["uninstall", "-y", "txkit-plugin-template"], check=True, capture_output=True)
    assert not any(e["provided_by"] == "txkit-plugin-template" for e in listed())
    assert sorted(p.relative_to(source) for p in source.rglob("*") if "__pycache__" not in p.parts) == before
