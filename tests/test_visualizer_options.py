"""Visualizers declare their options: `txkit list visualizer NAME` shows them and `--visualizer-option` sets them."""

import numpy as np
from click.testing import CliRunner
from PIL import Image

from txkit.cli.group import TxkitGroup
from txkit.cli.visualize import visualize_command
from txkit.plugins import registry


def _image(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(path)
    return path


def _visualize(tmp_path, *args):
    group = TxkitGroup(commands={"visualize": visualize_command})
    return CliRunner().invoke(group, ["visualize", "--backbone", "cxrnet", "--weights", "none", "--image-size", "64",
                                    "--image", str(_image(tmp_path)), "--out", str(tmp_path / "out"), *args])


def test_every_visualizer_declares_its_options():
    for name in registry("visualizer").names():
        assert registry("visualizer").get(name).options is not None, name


def test_an_option_changes_the_output(tmp_path):
    result = _visualize(tmp_path, "--method", "activations", "--visualizer-option", "top_k=4")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "x_activations_top4.png").exists()
    assert not (tmp_path / "out" / "x_activations_top16.png").exists()


def test_bad_options_are_one_line(tmp_path):
    for args, needle in [(["--method", "saliency", "--visualizer-option", "top_k=4"], "takes no options"),
                         (["--method", "activations", "--visualizer-option", "top_k=0"], "top_k=0"),
                         (["--method", "activations", "--visualizer-option", "topk=3"], "topk")]:
        result = _visualize(tmp_path, *args)
        assert result.exit_code != 0
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and needle in errors[0] and "Traceback" not in result.output, result.output
