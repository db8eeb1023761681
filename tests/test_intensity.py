"""Intensity rules (docs/training.md, "Intensity rules"): how stored values become the network's input, on real
DICOM files pydicom ships, 16-bit / float PNG and TIFF, and known arrays; the run records its rule, and predict /
colorize use it; `hu` reaches the window colorizer as true HU."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from faults import assert_one_line_error
from helpers import copy_with
from PIL import Image

from txkit.config import TrainConfig
from txkit.errors import ConfigError
from txkit.datasets import intensity
from txkit.datasets.base import Split
from txkit.datasets.files import file_split
from txkit.datasets.info import dataset_info
from txkit.colorizers.inputs import check_config
from txkit.datasets.intensity import IntensityRule, convert, load_file, load_input
from txkit.errors import DataError
from txkit.plugins import create
from txkit.datasets.pixels import resize_gray

try:
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pydicom < 3
    from pydicom.pixel_data_handlers.util import apply_modality_lut

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CT = TEST_FILES / "CT_small.dcm"  # CT in HU (Rescale Intercept -1024), no header window
MR = TEST_FILES / "MR_small.dcm"  # MR with a header window 600 / 1600
HU = {"unit": "HU", "format": "dicom", "modality": "CT", "photometric": "MONOCHROME2", "window_center": None,
      "window_width": None, "range": (-33792.0, 31743.0)}


def ct_hu() -> np.ndarray:
    ds = pydicom.dcmread(CT)
    return apply_modality_lut(ds.pixel_array, ds).astype(np.float64)


def ct_folder(root: Path, per_class: int = 4) -> Path:
    for cls in ("a", "b"):
        for i in range(per_class):
            copy_with(CT, root / cls / f"{i}.dcm", InstanceNumber=i + 1)
    return root


def array_split(*arrays, unit="16-bit") -> Split:
    """A split of in-memory images with stored values in ``unit``."""
    info = {"unit": unit, "format": "image", "modality": None, "photometric": None}
    return Split(lambda i: arrays[i], np.zeros(len(arrays), int), read=lambda i: (arrays[i], dict(info)))


def txkit(*args, env=None):
    """The txkit command in this process (the CLI's error handling included), shaped like subprocess.run's result."""
    from click.testing import CliRunner

    from txkit.cli.main import build_cli

    result = CliRunner(env=env).invoke(build_cli(), [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def fitted(text: str, split: Split) -> IntensityRule:
    return IntensityRule.parse(text).fit(split)


# --- DICOM --------------------------------------------------------------------------------------------------
def test_data_info_on_ct_small_reports_hu_with_pydicoms_modality_lut_values(tmp_path):
    hu = ct_hu()
    report = dataset_info(create("dataset", "imagefolder", root=str(ct_folder(tmp_path / "ct", 3))))
    for stats in report["intensity"].values():
        assert stats["unit"] == "HU" and stats["min"] == hu.min() and stats["max"] == hu.max()
        assert stats["modalities"] == {"CT": stats["sampled"]}


def test_hu_rule_gives_the_true_hu_and_window_rule_windows_them():
    hu = ct_hu()
    split = file_split([CT], [0])
    np.testing.assert_allclose(load_input(split, 0, 128, fitted("hu", split)), hu, atol=1e-3)
    expected = np.clip((hu - (40 - 200)) / 400, 0, 1)
    np.testing.assert_allclose(load_input(split, 0, 128, fitted("window:40:400", split)), expected, atol=1e-6)
    # auto on CT without a header window: dicom-voi, the fixed range -1024..3071 HU as 0..1, in float32
    auto = fitted("auto", split)
    assert auto.dtype == np.float32 and auto.record()["resolved"] == {"dicom": "dicom-voi"}
    np.testing.assert_allclose(load_input(split, 0, 128, auto), (hu + 1024) / 4095, atol=1e-6)


def test_monochrome1_copy_comes_out_inverted(tmp_path):
    flipped = copy_with(MR, tmp_path / "m1.dcm", PhotometricInterpretation="MONOCHROME1")
    split = file_split([MR, flipped], [0, 1])
    for text, tolerance in (("dicom-voi", 1 / 1599 + 1e-6), ("minmax", 1e-6), ("auto", 1 / 1599 + 1e-6)):
        rule = fitted(text, split)
        a, b = load_input(split, 0, 64, rule), load_input(split, 1, 64, rule)
        assert np.abs(a + b - 1).max() <= tolerance, text
        assert a.std() > 0.05, text


def test_hu_refuses_images_that_are_not_ct_in_hu(tmp_path):
    flipped = copy_with(CT, tmp_path / "ct_m1.dcm", PhotometricInterpretation="MONOCHROME1")
    for path in (MR, flipped):
        with pytest.raises(DataError) as error:
            fitted("hu", file_split([path], [0]))
        message = str(error.value)
        assert message.startswith(f"{path}: `intensity` hu") and "\n" not in message
    png = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(png)
    with pytest.raises(DataError, match="`intensity` hu needs CT in Hounsfield units, but this image is an 8-bit"):
        load_file(png, 8, IntensityRule.parse("hu"))


# --- 16-bit, 32-bit and float images --------------------------------------------------------------------------
def test_16_bit_png_keeps_its_value_order_across_images_unlike_minmax(tmp_path):
    low = np.linspace(1000, 2000, 64, dtype=np.uint16).reshape(8, 8)
    high = np.linspace(30000, 40000, 64, dtype=np.uint16).reshape(8, 8)
    paths = []
    for name, array in (("low", low), ("high", high)):
        Image.fromarray(array).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    assert Image.open(paths[0]).mode == "I;16"
    split = file_split(paths, [0, 1])
    auto = fitted("auto", split)
    assert auto.record()["resolved"] == {"16-bit": "bitdepth"} and auto.dtype == np.float32
    a, b = load_input(split, 0, 8, auto), load_input(split, 1, 8, auto)
    np.testing.assert_allclose(a, low / 65535, rtol=1e-6)
    assert a.max() < b.min()  # the stored order across images is kept
    minmax = fitted("minmax", split)
    a, b = load_input(split, 0, 8, minmax), load_input(split, 1, 8, minmax)
    assert a.min() == b.min() == 0 and a.max() == b.max() == 1  # per image: the order is gone


def test_mode_i_and_float_tiff_keep_their_real_values(tmp_path):
    wide = np.array([[0, 100_000], [2**30, 2**31 - 1]], dtype=np.int32)
    Image.fromarray(wide, mode="I").save(tmp_path / "wide.tif")
    floats = np.array([[0.0, 0.25], [0.5, 0.999]], dtype=np.float32)
    Image.fromarray(floats).save(tmp_path / "f.tif")
    rule = IntensityRule.parse("bitdepth")
    np.testing.assert_allclose(load_file(tmp_path / "wide.tif", 2, rule), wide / (2**31 - 1), rtol=1e-6)
    np.testing.assert_array_equal(load_file(tmp_path / "f.tif", 2, rule), floats)


def test_8_bit_images_keep_the_exact_old_input(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    split = file_split(paths, [0, 1, 0])
    for text in ("auto", "bitdepth", "dicom-voi"):
        rule = fitted(text, split)
        assert rule.dtype == np.uint8 and rule.record()["resolved"] == {"8-bit": "8-bit grey / 255"}
        for i in range(3):
            np.testing.assert_array_equal(load_input(split, i, 32, rule), resize_gray(split.image(i), 32))


# --- the rules on known arrays ---------------------------------------------------------------------------------
def test_each_rule_on_known_values():
    hu = np.array([[-1024.0, -160.0], [40.0, 240.0]])
    rules = {"window:40:400": [[0, 0], [0.5, 1]], "hu": hu, "minmax": (hu + 1024) / 1264,
             "dicom-voi": (hu + 1024) / 4095, "bitdepth": (hu + 33792) / (31743 + 33792)}
    for text, expected in rules.items():
        np.testing.assert_allclose(convert(hu, HU, 2, IntensityRule.parse(text), "x"), expected, atol=1e-6,
                                   err_msg=text)
    windowed = {**HU, "window_center": 40.0, "window_width": 401.0}  # DICOM's LINEAR window: -160.5 .. 239.5
    np.testing.assert_allclose(convert(hu, windowed, 2, IntensityRule.parse("dicom-voi"), "x"),
                               np.clip((hu + 160.5) / 400, 0, 1), atol=1e-6)
    sixteen = {"unit": "16-bit", "format": "image"}
    stored = np.array([[0.0, 65535.0], [257.0, 4095.0]])
    np.testing.assert_allclose(convert(stored, sixteen, 2, IntensityRule.parse("bitdepth"), "x"), stored / 65535,
                               rtol=1e-6)


def test_minmax_on_a_uniform_image_is_mid_grey_not_zeros():
    for value, info in ((7.0, {"unit": "16-bit", "format": "image"}), (-1000.0, HU)):
        out = convert(np.full((5, 5), value), info, 4, IntensityRule.parse("minmax"), "x")
        assert out.dtype == np.float32 and np.all(out == 0.5)


def test_percentile_is_computed_over_the_whole_dataset_never_per_image(monkeypatch):
    dark = np.arange(100, dtype=np.float64).reshape(10, 10)  # 0..99
    bright = dark + 900  # 900..999
    split = array_split(dark, bright)
    rule = fitted("percentile:0:100", split)
    assert rule.bounds == (0.0, 999.0)
    np.testing.assert_allclose(load_input(split, 0, 10, rule), dark / 999, atol=1e-6)  # not stretched to 0..1
    assert load_input(split, 1, 10, rule).min() > 0.9
    middle = fitted("percentile:25:75", split)
    expected = np.percentile(np.concatenate([dark.ravel(), bright.ravel()]), [25, 75])
    np.testing.assert_allclose(middle.bounds, expected)
    assert f"{float(expected[0])!r}" in middle.key and IntensityRule.from_record(middle.record()).key == middle.key
    # a big split: a seeded sample of FIT_SAMPLE images, the same every time
    monkeypatch.setattr(intensity, "FIT_SAMPLE", 3)
    many = array_split(*[dark + 10 * k for k in range(20)])
    first, again = fitted("percentile:1:99", many), fitted("percentile:1:99", many)
    assert first.sampled == 3 and first.total == 20 and first.bounds == again.bounds
    with pytest.raises(DataError, match="percentiles over 2 sampled training images are both 5"):
        fitted("percentile:10:90", array_split(np.full((4, 4), 5.0), np.full((4, 4), 5.0)))


def test_mixed_modalities_and_bit_depths_warn_with_counts(tmp_path):
    paths = [copy_with(CT, tmp_path / f"ct{i}.dcm") for i in range(3)] + [copy_with(MR, tmp_path / "mr.dcm")]
    rule = fitted("auto", file_split(paths, [0, 0, 1, 1]))
    text = " | ".join(rule.warnings)
    assert "mixed modalities in 4 sampled training images (CT 3, MR 1)" in text
    assert "mixed units / bit depths in 4 sampled training images (HU 3, 16-bit 1)" in text
    assert fitted("window:40:400", file_split(paths, [0, 0, 1, 1])).warnings[-1].startswith(
        "`intensity` window:40:400 is meant for CT in HU, but 1 of 4")


# --- rules and colorizers ------------------------------------------------------------------------------------
def test_hu_needs_a_colorizer_that_expects_hu():
    for colorizer in ("deconv", None, "repeat"):
        with pytest.raises(ConfigError) as error:
            check_config(TrainConfig.create(intensity="hu", colorizer=colorizer))
        assert str(error.value).startswith("`intensity` hu gives the network raw HU") and "\n" not in str(error.value)
    cfg = check_config(TrainConfig.create(intensity="hu", colorizer="window"))
    assert cfg.colorizer_options == {"input_is_unit": False}
    with pytest.raises(ConfigError, match="`colorizer` window with input_is_unit=False expects HU"):
        check_config(TrainConfig.create(intensity="auto", colorizer="window",
                                        colorizer_options={"input_is_unit": False}))
    with pytest.raises(ConfigError, match="`intensity` window needs two numbers, window:LEVEL:WIDTH"):
        TrainConfig.create(intensity="window")
    with pytest.raises(ConfigError, match="`intensity` is not a known rule; use auto, bitdepth"):
        TrainConfig.create(intensity="gamma")


def test_bad_rules_are_one_line_errors_on_the_command_line():
    result = txkit("train", "--intensity", "percentile:5:1", "--epochs", "1")
    assert_one_line_error(result, "--intensity", "0 <= LOW < HIGH <= 100", "'percentile:5:1'")
    result = txkit("train", "--intensity", "hu", "--colorizer", "deconv", "--epochs", "1")
    assert_one_line_error(result, "--intensity hu", "--colorizer deconv")


def test_training_warnings_name_the_flags_on_the_command_line(tmp_path):
    """The library's warnings name config fields (`intensity`); `txkit train` shows its flags instead."""
    result = txkit("train", "--dataset", "imagefolder", "--data-root", str(ct_folder(tmp_path / "ct")),
                   "--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--epochs", "1",
                   "--batch-size", "4", "--device", "cpu", "--intensity", "window:40:400", "--colorizer", "window",
                   "--out", str(tmp_path / "run"), env={"TXKIT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stderr.split())
    assert "warning: the window colorizer maps its [0, 1] input back to HU" in said
    assert "train with --intensity hu (now window:40:400)" in said and "`" not in said
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["intensity"]["warnings"]
    assert any("train with `intensity` hu" in warning for warning in recorded)  # config.json: the field's name


@pytest.fixture(scope="module")
def hu_run(module_tmp):
    base = module_tmp("hu_run")
    root, out = ct_folder(base / "ct"), base / "run"
    result = txkit("train", "--dataset", "imagefolder", "--data-root", str(root), "--backbone", "resnet18",
                       "--weights", "none", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
                       "--device", "cpu", "--intensity", "hu", "--colorizer", "window", "--out", str(out),
                       env={"TXKIT_CACHE_DIR": str(base / "cache")})
    return result, out


def test_one_epoch_on_a_dicom_folder_records_the_rule_and_colorize_windows_true_hu(hu_run, tmp_path):
    result, run = hu_run
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((run / "config.json").read_text())
    assert meta["config"]["intensity"] == "hu" and meta["config"]["colorizer_options"] == {"input_is_unit": False}
    record = meta["resolved"]["intensity"]
    n = record["sample"]["of"]  # the whole training split, sampled entirely
    assert record["rule"] == "hu" and record["sample"]["images"] == n > 0
    assert record["sources"] == {"dicom": n} and record["units"] == {"HU": n} and record["dtype"] == "float32"
    from txkit.visualizers.colorize import colorize_images

    written = colorize_images(str(run), [str(CT)], tmp_path)[0]
    hu = load_file(CT, 32, IntensityRule.parse("hu"))
    assert written["network_input"] == [pytest.approx(float(hu.min())), pytest.approx(float(hu.max()))]
    for (level, width), mean in zip(((40, 400), (-600, 1500), (50, 350)), written["channel_means"]):
        assert mean == pytest.approx(float(np.clip((hu - (level - width / 2)) / width, 0, 1).mean()), abs=1e-5)
    predicted = txkit("predict", str(run), str(CT), "--json")
    assert predicted.returncode == 0, predicted.stderr
    png = tmp_path / "gray.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png)
    assert_one_line_error(txkit("predict", str(run), str(png)), "intensity", "hu needs CT", "gray.png")
