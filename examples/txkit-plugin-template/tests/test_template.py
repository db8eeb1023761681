"""The template's tests. A plugin's tests import txkit only as ``txkit`` and ``txkit.testing`` (its public API):
the registries (``txkit.create``, ``txkit.registry``), the contract checks and the helpers to train a tiny run or
run the CLI in-process."""

import json

import pytest
import torch

import txkit
from txkit.testing import check_dataset, run_cli, tiny_config, train_tiny
from txkit_plugin_template.stripes import CLASSES


def test_entries_are_registered_by_this_distribution():
    assert txkit.registry("colorizer").get("edges").provided_by == "txkit-plugin-template"
    assert txkit.registry("dataset").get("stripes").provided_by == "txkit-plugin-template"


def test_edges_colorizer_maps_gray_to_three_unit_channels():
    colorizer = txkit.create("colorizer", "edges")
    assert isinstance(colorizer, txkit.Colorizer) and colorizer.output_kind == "unit"
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, :, 8:] = 1.0  # a vertical edge
    y = colorizer(x)
    assert y.shape == (2, 3, 16, 16)
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y[:, 0], x[:, 0])
    assert y[0, 1, 8, 7:9].min() > 0.4 and y[0, 1, 8, 0] == 0  # gradient only at the edge


def test_edges_takes_no_options():
    with pytest.raises(txkit.TxkitError, match="colorizer 'edges': takes no options"):
        txkit.create("colorizer", "edges", strength="2")


def test_stripes_keeps_the_dataset_contract_and_is_deterministic_and_balanced():
    a = check_dataset(txkit.create("dataset", "stripes", seed=1), file_backed=False)  # generated in memory
    b = txkit.create("dataset", "stripes", seed=1)
    assert a.classes == CLASSES and a.task == "multiclass"
    assert (a.split("train").image(3) == b.split("train").image(3)).all()
    assert list(a.split("train").labels).count(0) == 40


def test_stripes_options_are_checked_before_the_factory_runs():
    with pytest.raises(txkit.DataError, match="unknown option 'sise'; did you mean 'size'"):
        txkit.create("dataset", "stripes", sise="16")
    with pytest.raises(txkit.DataError, match="option size=4: must be >= 8"):
        txkit.create("dataset", "stripes", size="4")


def test_listed_by_the_cli():
    code, output, errors = run_cli(["list", "--json"])
    assert code == 0, errors
    names = {(e["kind"], e["name"], e["provided_by"]) for e in json.loads(output)}
    assert {("colorizer", "edges", "txkit-plugin-template"), ("dataset", "stripes", "txkit-plugin-template")} <= names
    code, output, errors = run_cli(["list", "dataset", "stripes", "--json"])
    assert code == 0, errors
    assert [o["name"] for o in json.loads(output)["options"]] == ["seed", "size", "per_class"]


def test_a_run_trains_on_stripes_through_edges(tmp_path):
    run = train_tiny(tmp_path / "run", dataset="stripes", data_options={"per_class": 4}, colorizer="edges")
    assert run.summary["status"] == "completed"
    assert run.resolved["classes"] == CLASSES and run.resolved["image_size"] == 32
    assert run.config.colorizer == "edges" and len(run.metrics) == 1


def test_edges_is_fixed_so_a_colorizer_strategy_refuses_it_up_front(tmp_path):
    with pytest.raises(txkit.TxkitError, match="colorizer 'edges' has no trainable parameters"):
        txkit.train(tiny_config(colorizer="edges", strategy="colorizer"), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before a run directory was made
