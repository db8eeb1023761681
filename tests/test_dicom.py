"""DICOM input (docs/training.md, "DICOM") on the real files pydicom ships: modality units (HU) in `txkit data
info`, MONOCHROME1 inversion, the default display rule, one-line errors for files txkit cannot read, and a
one-epoch training on a folder of CT slices."""

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from faults import assert_one_line_error
from helpers import copy_with, run_txkit
from PIL import Image

from txkit.datasets.base import load_gray
from txkit.datasets.dicom import CT_RANGE, is_dicom, read_dicom
from txkit.datasets.files import list_images
from txkit.errors import DataError

try:
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pydicom < 3
    from pydicom.pixel_data_handlers.util import apply_modality_lut

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CT = TEST_FILES / "CT_small.dcm"  # CT, HU by Rescale Intercept -1024, no window
MR = TEST_FILES / "MR_small.dcm"  # MR, window 600 / 1600
JPEG_LS = TEST_FILES / "MR_small_jpeg_ls_lossless.dcm"  # MR_small, JPEG-LS lossless
DECODED_HERE = [TEST_FILES / "MR_small_RLE.dcm", TEST_FILES / "MR_small_jp2klossless.dcm"]  # pydicom RLE, Pillow J2K


def ct_folder(root: Path, per_class: int = 8) -> Path:
    """ROOT/CLASS/x.dcm: CT_small copies whose Instance Number differs."""
    ds = pydicom.dcmread(CT)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            ds.InstanceNumber = i + 1
            ds.save_as(root / cls / f"{i}.dcm")
    return root


def test_data_info_reports_hu_min_and_max_as_pydicom_computes_them(tmp_path):
    root = ct_folder(tmp_path / "ct", per_class=3)
    ds = pydicom.dcmread(CT)
    hu = apply_modality_lut(ds.pixel_array, ds)
    result = run_txkit("data", "info", "imagefolder", "--data-root", str(root), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["warnings"] == []
    for split, stats in report["intensity"].items():
        assert stats["unit"] == "HU", (split, stats)
        assert stats["min"] == float(hu.min()) and stats["max"] == float(hu.max())
        assert stats["modalities"] == {"CT": stats["sampled"]} and stats["photometric"] == {"MONOCHROME2": stats["sampled"]}
    assert sum(s["sampled"] for s in report["intensity"].values()) == 6
    human = run_txkit("data", "info", "imagefolder", "--data-root", str(root))
    assert human.returncode == 0 and f"{hu.min():g} to {hu.max():g} HU" in human.stdout


def test_mixed_modalities_warn_with_counts(tmp_path):
    root = tmp_path / "mixed"
    for i in range(3):
        copy_with(CT, root / "a" / f"ct{i}.dcm")
        copy_with(MR, root / "b" / f"mr{i}.dcm")
    report = json.loads(run_txkit("data", "info", "imagefolder", "--data-root", str(root), "--json").stdout)
    warnings = " | ".join(report["warnings"])
    assert "mixed modalities" in warnings and "CT 3" in warnings and "MR 3" in warnings
    assert "mixed units" in warnings and "HU 3" in warnings and "16-bit 3" in warnings
    human = run_txkit("data", "info", "imagefolder", "--data-root", str(root))
    assert "warning: mixed modalities" in human.stdout


def test_read_dicom_values_and_header_facts():
    values, info = read_dicom(CT)
    ds = pydicom.dcmread(CT)
    assert values.dtype == np.float32 and values.shape == (128, 128)
    np.testing.assert_array_equal(values, apply_modality_lut(ds.pixel_array, ds))
    assert info["unit"] == "HU" and info["modality"] == "CT" and info["bits_stored"] == 16
    assert info["window_center"] is None
    _, mr = read_dicom(MR)
    assert mr["unit"] == "16-bit" and mr["window_center"] == 600 and mr["window_width"] == 1600


def test_default_display_rule_window_else_ct_range(tmp_path):
    ds = pydicom.dcmread(CT)
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    low, high = CT_RANGE
    expected = np.rint(np.clip((hu - low) * 255 / (high - low), 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(load_gray(CT), expected)
    # With a header window (first of several values) the window rules: level 40 / width 400 soft tissue.
    windowed = copy_with(CT, tmp_path / "w.dcm", WindowCenter=[40, 300], WindowWidth=[400, 1500])
    gray = load_gray(windowed)
    assert gray[hu <= 40 - 0.5 - 399 / 2].max() == 0 and gray[hu > 40 - 0.5 + 399 / 2].min() == 255
    mr = pydicom.dcmread(MR).pixel_array.astype(np.float64)
    expected = np.rint(np.clip((mr - (600 - 0.5 - 1599 / 2)) * 255 / 1599, 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(load_gray(MR), expected)


@pytest.mark.parametrize("source", [MR, CT], ids=["MR-window", "CT-no-window"])
def test_monochrome1_comes_out_inverted(tmp_path, source):
    flipped = copy_with(source, tmp_path / "m1.dcm", PhotometricInterpretation="MONOCHROME1")
    a, b = load_gray(source).astype(np.float64), load_gray(flipped).astype(np.float64)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < -0.95  # CT: coarse, its 16-bit stored range is the scale
    values, info = read_dicom(flipped)
    original, _ = read_dicom(source)
    lo, hi = info["range"]
    np.testing.assert_allclose(values, lo + hi - original)  # mirrored in the stored range
    assert info["unit"] == "16-bit" and info["photometric"] == "MONOCHROME1"
    if source == MR:  # window mirrored too: the same picture, inverted (up to the window's half-step)
        assert np.abs(a + b - 255).max() <= 1


def test_list_images_finds_dcm_and_extensionless_dicom(tmp_path):
    shutil.copy(CT, tmp_path / "slice.DCM")
    shutil.copy(CT, tmp_path / "IM0001")
    (tmp_path / "README").write_text("not an image, no suffix")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    assert [p.name for p in list_images(tmp_path)] == ["IM0001", "slice.DCM", "x.png"]
    assert is_dicom(tmp_path / "IM0001") and not is_dicom(tmp_path / "README")
    np.testing.assert_array_equal(load_gray(tmp_path / "IM0001"), load_gray(CT))


def _decodes(path: Path) -> bool:
    try:
        pydicom.dcmread(path).pixel_array
        return True
    except Exception:
        return False


@pytest.mark.parametrize("path", DECODED_HERE, ids=lambda p: p.name)
def test_compressed_files_with_a_decoder_match_the_uncompressed_original(path):
    assert _decodes(path), f"{path.name} should decode with pydicom's RLE decoder / Pillow (a core dependency)"
    np.testing.assert_array_equal(load_gray(path), load_gray(MR))


@pytest.fixture(scope="module")
def trained_run(module_tmp):
    """One epoch on a CT folder (8 slices per class); the run also serves `txkit predict` below."""
    base = module_tmp("dicom_train")
    root = ct_folder(base / "ct")
    out = base / "run"
    result = run_txkit("train", "--dataset", "imagefolder", "--data-root", str(root), "--backbone", "resnet18",
                       "--weights", "none", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
                       "--device", "cpu", "--out", str(out))
    return result, out


def test_one_epoch_training_on_a_dicom_folder_finishes(trained_run):
    result, out = trained_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.is_dir() and any(out.iterdir())


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "png.dcm"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    noise = folder / "noise.dcm"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    cut = folder / "cut.dcm"
    cut.write_bytes(CT.read_bytes()[:20000])
    ds = pydicom.dcmread(CT)
    del ds.PixelData
    nopixels = folder / "nopixels.dcm"
    ds.save_as(nopixels)
    multi = folder / "multi.dcm"
    shutil.copy(TEST_FILES / "rtdose.dcm", multi)  # 15 frames, uncompressed
    cases = {"png": (png, "not a DICOM file"), "noise": (noise, "not a DICOM file"),
             "cut": (cut, "truncated DICOM pixel data"), "nopixels": (nopixels, "without pixel data"),
             "multi": (multi, "multi-frame DICOM (15 frames)")}
    if not _decodes(JPEG_LS):
        jls = folder / "jpegls.dcm"
        shutil.copy(JPEG_LS, jls)
        cases["jpegls"] = (jls, "pip install pylibjpeg pylibjpeg-libjpeg")
    return cases


def test_unreadable_dicom_files_raise_one_line_data_errors(tmp_path):
    cases = _bad_files(tmp_path)
    assert "jpegls" in cases or np.array_equal(load_gray(JPEG_LS), load_gray(MR))
    for name, (path, problem) in cases.items():
        with pytest.raises(DataError) as error:
            load_gray(path)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and problem in message and "\n" not in message, (name, message)


def test_unreadable_dicom_files_are_one_line_errors_on_the_command_line(tmp_path, trained_run):
    result, run = trained_run
    assert result.returncode == 0, result.stderr[-3000:]
    cases = _bad_files(tmp_path)
    # Every case is checked in-process above; here the command line turns a few of them into one Error: line.
    for name in ("png", "cut", "multi", "jpegls"):
        if name not in cases:
            continue
        path, problem = cases[name]
        assert_one_line_error(run_txkit("predict", str(run), str(path)), path.name, problem, exit_code=1)
