"""Every registered entry declares its options (issue 12, item 6): validation, `txkit list KIND NAME`, docs."""

import json
import re

import pytest
from faults import assert_one_line_error
from helpers import ROOT, make_distribution, pythonpath, run_txkit

from txkit.errors import DataError, TxkitError
from txkit.options import Field, Options, default_text, validate_options
from txkit.plugins import PluginInfo, PluginSet, create, registry

DOCUMENTED = ("synthetic-dld", "imagefolder", "csv", "medmnist")


def _csv(tmp_path):
    from PIL import Image

    rows = ["path,label"]
    for i in range(8):
        Image.new("L", (8, 8), color=i * 20).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{'ab'[i % 2]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


# ---------------------------------------------------------------------------------------------- validation

def test_unknown_option_gets_did_you_mean_through_the_cli(tmp_path):
    table = _csv(tmp_path)
    result = run_txkit("data", "info", "csv", "--data-root", str(table), "--data-option", "path_colum=x")
    line = assert_one_line_error(result, "dataset 'csv'", "unknown option 'path_colum'",
                                 "did you mean 'path_column'?", "txkit list dataset csv")
    assert line == ("Error: dataset 'csv': unknown option 'path_colum'; did you mean 'path_column'? "
                    "(txkit list dataset csv shows them)")


def test_unknown_option_without_close_name_lists_valid_ones():
    with pytest.raises(DataError, match=r"unknown option\(s\) colour; valid: seed, size, per_class"):
        create("dataset", "synthetic-dld", colour="red")


def test_bad_type_and_range_are_one_line_through_the_cli(tmp_path):
    table = _csv(tmp_path)
    result = run_txkit("data", "info", "csv", "--data-root", str(table), "--data-option", "val_fraction=2")
    assert_one_line_error(result, "dataset 'csv': option val_fraction=2: must be <= 0.9")
    result = run_txkit("data", "info", "synthetic-dld", "--data-option", "per_class=many")
    assert_one_line_error(result, "dataset 'synthetic-dld': option per_class=many:")
    result = run_txkit("data", "info", "synthetic-dld", "--data-option", "size=12")
    assert_one_line_error(result, "option size=12: must be a multiple of 8")


def test_rules_across_options_and_colorizer_options():
    with pytest.raises(DataError, match="val_fraction \\+ test_fraction must be below 1, got 1.2"):
        create("dataset", "imagefolder", root="/nowhere", val_fraction="0.6", test_fraction="0.6")
    with pytest.raises(TxkitError, match="colorizer 'repeat': takes no options \\(got gain\\)"):
        create("colorizer", "repeat", gain="2")
    with pytest.raises(TxkitError, match="colorizer 'window': option windows=1:2: must be three level:width"):
        create("colorizer", "window", windows="1:2")


def test_strings_from_the_cli_are_coerced(tmp_path):
    dataset = create("dataset", "synthetic-dld", per_class="2", size="16", seed="3")
    assert dataset.info["per_class"] == {"train": 2, "val": 2, "test": 2} and dataset.info["seed"] == 3
    table = _csv(tmp_path)
    dataset = create("dataset", "csv", root=str(table), skip_bad_images="true", val_fraction="0.25",
                     test_fraction="0", image_size="48")
    assert dataset.info["image_size"] == 48 and len(dataset.split("val")) == 2

    class Demo(Options):
        flag: bool = Field(False, description="a flag")
        count: int = Field(1, ge=0, description="a count")
        name: str = Field("x", description="a name")

    for text, value in (("true", True), ("false", False), ("1", True), ("0", False), ("yes", True)):
        assert validate_options("dataset 'demo'", Demo, {"flag": text})["flag"] is value
    assert validate_options("dataset 'demo'", Demo, {"count": "6", "name": 14}) == {"flag": False, "count": 6,
                                                                                 "name": "14"}
    with pytest.raises(TxkitError, match="^dataset 'demo': option flag=maybe: must be true or false"):
        validate_options("dataset 'demo'", Demo, {"flag": "maybe"})
    with pytest.raises(TxkitError, match="^dataset 'demo': option count=-1: must be >= 0$"):
        validate_options("dataset 'demo'", Demo, {"count": "-1"})


# -------------------------------------------------------------------------------------------- registration

def _plugin_set(module) -> PluginSet:
    plugins = PluginSet()
    plugins.add_module(module, PluginInfo("demo-plugin", "0.1"), name="demo")
    plugins.fill_registries()
    return plugins


def test_an_entry_registered_without_options_still_works():
    import txkit

    seen = {}

    class Module:
        @staticmethod
        @txkit.hookimpl
        def register_datasets(register):
            register("free", lambda root=None, **options: seen.update(options) or "made", "no options declared")
            register("bad", lambda **kw: None, "wrong options", options=42)

    plugins = _plugin_set(Module)
    entry = plugins.registry("dataset").get("free")
    assert entry.options is None and entry.create("free", root=None, anything="goes") == "made"
    assert seen == {"anything": "goes"}
    assert "bad" not in plugins.registry("dataset").entries
    assert any("options=42 is neither" in e for e in plugins.plugins["demo-plugin"].errors)


def test_plugin_options_as_a_module_string_are_imported_lazily(site):
    make_distribution(site, "txkit-optdemo", "optdemo", """
        import txkit

        @txkit.hookimpl
        def register_datasets(register):
            register("demo", "optdemo_data:build", "a demo dataset", options="optdemo_data:DemoOptions")
    """)
    (site / "optdemo_data.py").write_text(
        "from txkit.datasets import Split, TxDataset\n"
        "from txkit.options import Field, Options\n"
        "import numpy as np\n"
        "class DemoOptions(Options):\n"
        "    count: int = Field(4, ge=1, description='images per split')\n"
        "    noisy: bool = Field(False, description='add noise')\n"
        "def build(root=None, count=0, noisy=None):\n"
        "    assert isinstance(count, int) and isinstance(noisy, bool)\n"
        "    labels = np.arange(count) % 2\n"
        "    split = Split(lambda i: np.zeros((8, 8), np.uint8), labels)\n"
        "    return TxDataset('demo', ['a', 'b'], {'train': split, 'val': split, 'test': split})\n")
    env = pythonpath(site)
    code = ("import sys; from txkit.plugins import registry; e = registry('dataset').get('demo'); "
            "assert 'optdemo_data' not in sys.modules; print(e.create('demo', root=None, count='6').info, "
            "len(e.create('demo', root=None).split('train')))")
    done = run_txkit("list", "dataset", "demo", "--json", env=env)
    shown = json.loads(done.stdout)
    assert shown["provided_by"] == "txkit-optdemo"
    assert shown["options"] == [{"name": "count", "type": "int", "default": 4, "help": "images per split"},
                                {"name": "noisy", "type": "bool", "default": False, "help": "add noise"}]
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, **env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "4"
    result = run_txkit("data", "info", "demo", "--data-option", "cuont=3", env=env)
    assert_one_line_error(result, "dataset 'demo': unknown option 'cuont'; did you mean 'count'?")


# -------------------------------------------------------------------------------------------------- listing

def test_list_dataset_csv_shows_its_options():
    result = run_txkit("list", "dataset", "csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dataset csv: CSV with path and label columns")
    assert lines[1] == "provided by: txkit"
    header = next(line for line in lines if line.split()[:4] == ["option", "type", "default", "help"])
    rows = {line.split()[0]: line.split() for line in lines[lines.index(header) + 1:] if line.strip()}
    assert rows["val_fraction"][1:3] == ["float", "0.15"] and rows["path_column"][1:3] == ["str", "path"]
    assert rows["label_columns"][1:5] == ["str", "|", "none", "none"]
    assert all(len(line) <= len(header) for line in lines[lines.index(header):])  # one row per option


def test_list_entry_json_shape_and_unknown_name():
    shown = json.loads(run_txkit("list", "datasets", "csv", "--json").stdout)
    assert set(shown) == {"kind", "name", "description", "provided_by", "options"}
    assert (shown["kind"], shown["name"], shown["provided_by"]) == ("dataset", "csv", "txkit")
    assert all(set(o) == {"name", "type", "default", "help"} and o["help"] for o in shown["options"])
    assert {o["name"]: o["default"] for o in shown["options"]}["skip_bad_images"] is False
    assert_one_line_error(run_txkit("list", "dataset", "cvs"), "no dataset named 'cvs'; did you mean 'csv'?")
    assert json.loads(run_txkit("list", "strategy", "finetune-from:layer3", "--json").stdout)["options"] == []
    assert "options: none" in run_txkit("list", "backbone", "resnet18").stdout


# ----------------------------------------------------------------------------------------------------- docs

def _documented_options() -> dict[str, dict[str, str]]:
    """{dataset: {option: default}} from the option tables under each ``## `name` `` heading."""
    text = (ROOT / "docs" / "datasets.md").read_text()
    found = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        name = re.match(r"`([^`]+)`", section)
        if not name:
            continue
        rows = re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", section, flags=re.M)
        found[name.group(1)] = dict(rows)
    return found


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docs_name_every_declared_option_with_its_default_and_nothing_else(name):
    documented = _documented_options()[name]
    options_cls = registry("dataset").get(name).load_options()
    declared = {field: default_text(info.get_default()) for field, info in options_cls.model_fields.items()}
    assert documented == declared
