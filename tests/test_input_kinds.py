"""Inputs of a kind training never saw (docs/training.md): predict, evaluate (also on another dataset), colorize
and visualize compare each image with the kinds of source the run recorded (``resolved.intensity.sources``,
``units``, ``modalities``) and refuse it in one line where the rule cannot give it a meaningful input, else warn
once per kind, naming the image, the rule and what the rule does to it."""

import json
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from faults import assert_one_line_error
from helpers import tiny_config
from PIL import Image

from txkit.datasets.base import Split
from txkit.datasets.intensity import InputCheck, IntensityRule
from txkit.errors import DataError, TxkitWarning

EIGHT = {"unit": "8-bit", "format": "image", "modality": None, "photometric": None}
SIXTEEN = {"unit": "16-bit", "format": "image", "modality": None, "photometric": None}
CT = {"unit": "HU", "format": "dicom", "modality": "CT", "photometric": "MONOCHROME2", "window_center": None,
      "window_width": None, "range": (-1024.0, 3071.0)}
MR = {"unit": "16-bit", "format": "dicom", "modality": "MR", "photometric": "MONOCHROME2", "window_center": 600,
      "window_width": 1600, "range": (0.0, 65535.0)}


def fitted_on(info: dict, text: str, n: int = 4) -> IntensityRule:
    """``text`` fitted on ``n`` in-memory images whose info is ``info`` (values 1000..40000)."""
    image = np.linspace(1000, 40000, 64).reshape(8, 8)
    split = Split(lambda i: image, np.zeros(n, int), read=lambda i: (image, dict(info)))
    return IntensityRule.parse(text).fit(split)


def txkit(*args):
    """The txkit command in this process, errors and warnings handled as the CLI does."""
    from click.testing import CliRunner

    from txkit.cli.main import build_cli

    result = CliRunner().invoke(build_cli(), [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


# --- the table -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["auto", "bitdepth", "dicom-voi", "minmax"])
def test_an_8_bit_image_under_a_rule_fitted_on_16_bit_warns_what_the_rule_does_to_it(text):
    found = fitted_on(SIXTEEN, text).unseen(EIGHT)
    assert found is not None and not found.refuse
    message = found.message
    assert "an 8-bit image" in message and "16-bit 4" in message and f"`intensity` {text}" in message
    assert "\n" not in message and "check its result, or give images of the kind training saw" in message
    if text != "minmax":  # the rules that differ per kind say what each kind gets
        assert "divides its 8-bit grey by 255" in message and "16-bit divided by 65535" in message


@pytest.mark.parametrize("text", ["percentile:1:99", "window:40:400"])
def test_an_8_bit_image_under_a_rule_whose_numbers_are_in_16_bit_units_is_refused(text):
    found = fitted_on(SIXTEEN, text).unseen(EIGHT)
    assert found is not None and found.refuse
    assert f"`intensity` {text}" in found.message and "numbers in 16-bit that mean nothing for 8-bit values" \
        in found.message
    assert "convert it to 16-bit as the training images were" in found.message


def test_hu_and_a_window_fitted_on_ct_refuse_what_is_not_ct_in_hu():
    for text in ("hu", "window:40:400"):
        rule = fitted_on(CT, text)
        assert rule.unseen(CT) is None
        for info in (EIGHT, MR):
            found = rule.unseen(info)
            assert found.refuse and f"`intensity` {text}" in found.message and "give CT DICOM in HU" in found.message
    assert "hu needs CT in Hounsfield units" in fitted_on(CT, "hu").unseen(EIGHT).message


def test_a_dicom_modality_training_never_saw_warns_with_the_modalities():
    message = fitted_on(CT, "auto").unseen(MR).message
    assert "MR DICOM in 16-bit" in message and "modalities CT 4" in message
    assert "maps its display range -200..1399 to 0..1" in message  # the MR's own header window


def test_kinds_training_saw_and_runs_that_recorded_none_are_not_checked():
    assert fitted_on(SIXTEEN, "percentile:1:99").unseen(SIXTEEN) is None
    old = IntensityRule.from_record({"rule": "percentile:1:99", "bounds": [1000.0, 40000.0]})  # no "sources"
    assert old.kinds is None and old.unseen(EIGHT) is None


def test_the_check_warns_once_per_kind_and_names_the_first_image():
    said = []
    check = InputCheck(fitted_on(SIXTEEN, "bitdepth"), warn=said.append)
    for name in ("a.png", "b.png", "c.tif"):
        check(EIGHT, name)
    check(SIXTEEN, "d.png")
    assert len(said) == 1 and said[0].startswith("a.png: an 8-bit image")
    with pytest.raises(DataError, match=r"^x\.png: an 8-bit image.*`intensity` percentile:1:99"):
        InputCheck(fitted_on(SIXTEEN, "percentile:1:99"))(EIGHT, "x.png")


# --- runs -----------------------------------------------------------------------------------------------------
def write_folder(root, dtype, base=(8000, 20000), per_class=4, seed=0):
    """train/val/test of two classes of ``dtype`` PNGs (class b brighter)."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    for split in ("train", "val", "test"):
        for label, level in zip(("a", "b"), base):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = rng.normal(level, level / 4, (32, 32)).clip(0, top).astype(dtype)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def runs(module_tmp):
    """A bitdepth run (conv1x1 colorizer) and a percentile run, both trained on 16-bit PNGs, and 8-bit PNGs."""
    from txkit.training import session

    base = module_tmp("input_kinds")
    data = write_folder(base / "data16", np.uint16)
    made = {}
    for name, intensity in (("bitdepth", "bitdepth"), ("percentile", "percentile:1:99")):
        cfg = tiny_config(dataset="imagefolder", data_root=str(data), data_options={}, intensity=intensity,
                          epochs=1, image_size=32, colorizer="conv1x1", cache_dir=str(base / "cache"))
        made[name] = session.train(cfg, base / name)[0]
    eight = write_folder(base / "data8", np.uint8, base=(60, 160))
    png8 = eight / "test" / "a" / "0.png"
    png16 = data / "test" / "a" / "0.png"
    return SimpleNamespace(bitdepth=made["bitdepth"], percentile=made["percentile"], eight=eight, png8=png8,
                           png16=png16, base=base)


def warning_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_predict_warns_in_one_line_on_an_8_bit_image_under_bitdepth_fitted_on_16_bit(runs):
    result = txkit("predict", runs.bitdepth, runs.png8, runs.png16, runs.png8, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = warning_lines(result)
    assert len(lines) == 1, result.stderr  # once per kind, whatever the number of such images
    assert lines[0].startswith(f"warning: {runs.png8}: an 8-bit image") and "--intensity bitdepth divides its " \
        "8-bit grey by 255 (the training images: 16-bit divided by 65535)" in lines[0]
    assert len(result.stdout.splitlines()) == 3  # every image still predicted
    quiet = txkit("predict", runs.bitdepth, runs.png16, "--device", "cpu")
    assert quiet.returncode == 0 and not warning_lines(quiet) and "Error" not in quiet.stderr


def test_predict_refuses_an_8_bit_image_under_percentile_bounds_in_16_bit_units(runs):
    result = txkit("predict", runs.percentile, runs.png16, runs.png8, "--device", "cpu")
    assert_one_line_error(result, str(runs.png8), "--intensity percentile:1:99", "16-bit",
                          "convert it to 16-bit as the training images were")
    assert not result.stdout  # refused before any image was predicted


def test_the_python_api_warns_with_a_txkit_warning(runs):
    import txkit as api

    with pytest.warns(TxkitWarning, match=r"an 8-bit image.*`intensity` bitdepth divides its 8-bit grey by 255"):
        api.Run(runs.bitdepth).predict(runs.png8, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TxkitWarning)
        api.Run(runs.bitdepth).predict(runs.png16, device="cpu")  # a kind training saw: no warning


def test_evaluation_on_another_dataset_of_8_bit_images_warns_or_refuses(runs):
    from txkit.run.predict import predict_split
    from txkit.training.engine import load_dataset

    other = load_dataset(tiny_config(dataset="imagefolder", data_root=str(runs.eight), data_options={}))
    with pytest.warns(TxkitWarning) as said:
        predicted = predict_split(runs.bitdepth, "test", dataset=other, device="cpu")
    assert len(predicted["ids"]) == 8
    messages = [str(w.message) for w in said if issubclass(w.category, TxkitWarning)]
    assert len(messages) == 1 and "an 8-bit image" in messages[0] and "`intensity` bitdepth" in messages[0]
    with pytest.raises(DataError, match=r"\.png: an 8-bit image.*`intensity` percentile:1:99.*convert it to 16-bit"):
        predict_split(runs.percentile, "test", dataset=other, device="cpu")


def test_evaluate_of_the_runs_own_test_split_says_nothing(runs):
    result = txkit("evaluate", runs.percentile, "--bootstrap", "0", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    assert not warning_lines(result)


def test_colorize_warns_or_refuses(runs, tmp_path):
    result = txkit("colorize", runs.bitdepth, runs.png8, "--out", tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert len(warning_lines(result)) == 1 and "--intensity bitdepth" in warning_lines(result)[0]
    refused = txkit("colorize", runs.percentile, runs.png8, "--out", tmp_path / "b")
    assert_one_line_error(refused, str(runs.png8), "--intensity percentile:1:99", "convert it to 16-bit")
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_visualize_warns_in_its_result_or_refuses(runs, tmp_path):
    from txkit.visualizers import visualize

    result = visualize(str(runs.bitdepth), "saliency", [str(runs.png8), str(runs.png16)], out=None)
    said = [w for w in result.warnings if "an 8-bit image" in w]
    assert len(said) == 1 and said[0].startswith(f"warning: {runs.png8}: an 8-bit image")
    assert "`intensity` bitdepth divides its 8-bit grey by 255" in said[0]
    cli = txkit("visualize", runs.bitdepth, "--method", "saliency", "--image", runs.png8, "--out", tmp_path / "v")
    assert cli.returncode == 0 and "--intensity bitdepth divides" in cli.stderr
    refused = txkit("visualize", runs.percentile, "--method", "saliency", "--image", runs.png8,
                    "--out", tmp_path / "w")
    assert_one_line_error(refused, str(runs.png8), "--intensity percentile:1:99", "convert it to 16-bit")


def test_a_run_that_recorded_no_sources_is_not_checked(runs):
    old = runs.base / "old"
    shutil.copytree(runs.bitdepth, old)
    meta = json.loads((old / "config.json").read_text())
    for key in ("sources", "resolved", "units", "modalities", "sample", "header_windows"):
        meta["resolved"]["intensity"].pop(key, None)
    (old / "config.json").write_text(json.dumps(meta))
    result = txkit("predict", old, runs.png8, "--device", "cpu")
    assert result.returncode == 0 and not warning_lines(result), result.stderr
