import json

import pytest
import torch
from click.testing import CliRunner

from txkit.cli.main import build_cli
from txkit.plugins import create, registry


def test_entries_are_registered_by_this_distribution():
    assert registry("colorizer").get("edges").provided_by == "txkit-plugin-template"
    assert registry("dataset").get("stripes").provided_by == "txkit-plugin-template"


def test_edges_colorizer_maps_gray_to_three_unit_channels():
    colorizer = create("colorizer", "edges")
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, :, 8:] = 1.0  # a vertical edge
    y = colorizer(x)
    assert y.shape == (2, 3, 16, 16)
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y[:, 0], x[:, 0])
    assert y[0, 1, 8, 7:9].min() > 0.4 and y[0, 1, 8, 0] == 0  # gradient only at the edge


def test_stripes_dataset_is_deterministic_and_balanced():
    a, b = create("dataset", "stripes", seed=1), create("dataset", "stripes", seed=1)
    assert (a.split("train").image(3) == b.split("train").image(3)).all()
    assert list(a.split("train").labels).count(0) == 40


def test_listed_by_the_cli():
    out = CliRunner().invoke(build_cli(), ["list", "--json"]).output
    names = {(e["kind"], e["name"], e["provided_by"]) for e in json.loads(out)}
    assert ("colorizer", "edges", "txkit-plugin-template") in names


def test_edges_is_fixed_so_a_colorizer_strategy_refuses_it_up_front():
    from txkit.errors import TxkitError
    from txkit.training.build import build_strategy
    from txkit.config import TrainConfig

    with pytest.raises(TxkitError, match="colorizer 'edges' has no trainable parameters"):
        build_strategy(TrainConfig(colorizer="edges", strategy="colorizer"))
