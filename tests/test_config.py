"""One configuration spine: TrainConfig's fields are the CLI's options, the experiment file's fields and the
Python API's keywords, with the same names, types and defaults; and the Python API itself."""

import json
import re
import subprocess
import sys
import types
import typing

import click
import pytest

from helpers import ROOT, run_txkit

import txkit
from txkit.cli.main import build_cli
from txkit.config import ConfigError, TrainConfig, WeightsSource
from txkit.experiments.spec import Checker, ExperimentFileError

FIELDS = TrainConfig.model_fields
TRAIN = build_cli().commands["train"]
PARAMS = {p.name: p for p in TRAIN.params}

# A value of the wrong type for each kind of field (the TOML checker must refuse it).
WRONG = {int: "3", float: "x", bool: 1, str: 3, dict: "a=1"}


def base_type(name):
    annotation = FIELDS[name].annotation
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    first = [a for a in typing.get_args(annotation) if a is not type(None)][0] if is_union else annotation
    if typing.get_origin(first) is typing.Literal:
        return type(typing.get_args(first)[0])
    if typing.get_origin(first) is typing.Annotated:
        return typing.get_args(first)[0]
    return typing.get_origin(first) or first


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_field_is_a_cli_option_with_the_same_default_and_type(name):
    param = PARAMS[name]
    default = FIELDS[name].get_default(call_default_factory=True)
    if base_type(name) is dict:
        assert param.multiple and not param.required  # no value given: an empty table, as the default
        return
    assert param.default == default
    choices = [a for a in typing.get_args(FIELDS[name].annotation) if typing.get_origin(a) is typing.Literal]
    literal = typing.get_origin(FIELDS[name].annotation) is typing.Literal
    others = [a for a in typing.get_args(FIELDS[name].annotation) if a not in choices and a is not type(None)]
    if choices and others:  # a word or a number (num_workers: auto|N)
        assert param.type.convert("2", param, None) == 2
        assert param.type.convert(choices[0].__args__[0], param, None) == choices[0].__args__[0]
    elif literal or choices:
        values = typing.get_args(FIELDS[name].annotation if literal else choices[0])
        assert isinstance(param.type, click.Choice) and list(param.type.choices) == list(values)
    elif base_type(name) is bool:
        assert param.is_flag
    else:
        assert param.type.name in {int: ("integer", "integer range"), float: ("float", "float range"),
                                   str: ("text",)}[base_type(name)]
    assert param.help == FIELDS[name].description


@pytest.mark.parametrize("name", list(FIELDS))
def test_the_experiment_checker_and_the_python_api_accept_the_same_fields(name, tmp_path):
    default = FIELDS[name].get_default(call_default_factory=True)
    check = Checker(tmp_path / "x.toml")
    if default is not None:
        assert name in check.config("[defaults]", {name: default})
        assert getattr(TrainConfig.create(**{name: default}), name) == default
    with pytest.raises(ExperimentFileError, match=name):
        check.config("[defaults]", {name: WRONG[base_type(name)]})


def test_one_default_for_amp_everywhere():
    assert TrainConfig().amp is True and PARAMS["amp"].default is True


def test_unknown_fields_get_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown field `epoch`; did you mean `epochs`"):
        TrainConfig.create(epoch=3)


def test_library_errors_name_the_field_and_the_cli_shows_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"`batch_size` must be greater than or equal to 1"):
        TrainConfig.create(batch_size=0)
    result = run_txkit("train", "--weights", "", "--out", str(tmp_path / "run"))
    assert "Error: --weights is empty" in result.stderr


def test_weights_are_parsed_once_into_a_typed_source(tmp_path):
    (tmp_path / "run").mkdir()
    assert WeightsSource.parse("imagenet").pretrained and WeightsSource.parse("none").kind == "none"
    assert WeightsSource.parse("stage:textures") == WeightsSource("stage", "textures")
    assert WeightsSource.parse(str(tmp_path / "run")).kind == "run"
    assert WeightsSource.parse(str(tmp_path / "w.safetensors")).kind == "file"
    assert TrainConfig(weights=" imagenet ").weights_source.kind == "imagenet"


def test_every_option_of_every_command_has_help():
    missing = []

    def walk(command, path):
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{path} {param.opts[0]}")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")
    walk(build_cli(), "txkit")
    assert not missing


def test_import_txkit_imports_no_torch():
    code = "import sys, txkit; txkit.TrainConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


TINY = dict(dataset="synthetic-dld", data_options={"per_class": "6", "size": "32"}, backbone="resnet18",
            weights="none", epochs=1, batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def api_and_cli_runs(module_tmp):
    root = module_tmp("spine")
    run = txkit.train(**TINY, out=root / "api", progress=False)
    args = ["train", "--out", str(root / "cli")]
    for key, value in TINY.items():
        if key == "data_options":
            for k, v in value.items():
                args += ["--data-option", f"{k}={v}"]
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    result = run_txkit(*args)
    assert result.returncode == 0, result.stderr
    return run, root / "cli"


def test_the_python_api_and_the_cli_record_equal_configs(api_and_cli_runs):
    run, cli_dir = api_and_cli_runs
    recorded = json.loads((cli_dir / "config.json").read_text())["config"]
    assert run.config.to_dict() == recorded


def test_run_evaluate_matches_the_cli(api_and_cli_runs):
    run, _ = api_and_cli_runs
    from_api = run.evaluate("test")
    from_cli = json.loads(run_txkit("evaluate", str(run.path), "--json").stdout)
    assert set(from_cli) <= set(from_api)
    for key in ("accuracy", "auc", "f1", "ece", "ci"):
        assert from_api[key] == pytest.approx(from_cli[key]) if not isinstance(from_cli[key], dict) \
            else json.dumps(from_api[key], sort_keys=True, default=str) == json.dumps(from_cli[key], sort_keys=True)


def test_run_exposes_config_summary_and_metrics(api_and_cli_runs):
    run, _ = api_and_cli_runs
    assert isinstance(run.config, TrainConfig) and run.summary["status"] == "completed"
    assert [line["epoch"] for line in run.metrics] == [1]
    with pytest.raises(txkit.ConfigError if False else Exception, match="not a txkit run directory"):
        txkit.Run(run.path.parent)


def test_docs_api_examples_run(tmp_path):
    """Every ```python block of docs/api.md runs, in order, and prints what the next ```text block shows
    (lines that show trained numbers are compared by shape only)."""
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```(python|text)\n(.*?)```", text, flags=re.S)
    code = "\n".join(body for kind, body in blocks if kind == "python" and "run_experiment" not in body)
    # the examples are written for the repository root, where ../shared/data is the shared data folder
    code = code.replace('"../shared/', f'"{ROOT.parent / "shared"}/')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    expected = "".join(body for kind, body in blocks if kind == "text")
    assert out.stdout.splitlines() == expected.splitlines()
