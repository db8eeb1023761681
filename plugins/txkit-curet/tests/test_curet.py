import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from txkit import DataError, create, registry
from txkit.testing import check_dataset, data_info, run_cli, write_image
from txkit_curet.curet import CLASSES, crop_and_resize


def write_texture(path: Path, kind: str, size: tuple[int, int], seed: int) -> None:
    """A noise texture: original CUReT images are colour BMPs, curetgrey ones 8-bit PNGs."""
    width, height = size
    gray = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    if kind == "bmp":
        write_image(path, np.stack([gray, gray, gray // 2], axis=-1))
    else:
        write_image(path, gray, truncate=kind == "truncated")


def curet_tree(root: Path, samples: list[int], per_sample: int, suffix: str, size: tuple[int, int]) -> Path:
    for sample in samples:
        for n in range(1, per_sample + 1):
            name = root / f"sample{sample:02d}" / f"{sample:02d}-{n:03d}.{suffix}"
            write_texture(name, "bmp" if suffix == "bmp" else "png", size, seed=sample * 1000 + n)
    return root


@pytest.fixture(scope="module")
def original(module_tmp):
    return curet_tree(module_tmp("curet"), [1, 2, 61], 10, "bmp", (64, 48))


def test_original_bmp_layout_61_classes_and_a_class_proportional_split(original):
    dataset = check_dataset(create("dataset", "curet", root=str(original)), file_backed=True)
    assert dataset.classes == CLASSES and len(CLASSES) == 61 and dataset.classes[60] == "sample61"
    for split in ("train", "val", "test"):
        assert np.bincount(dataset.split(split).labels).nonzero()[0].tolist() == [0, 1, 60]
    assert sum(len(s) for s in dataset.splits.values()) == 30
    assert dataset.info["formats"] == [".bmp"] and dataset.info["samples_found"] == 3


def test_centre_crop_then_resize_to_224(original):
    dataset = create("dataset", "curet", root=str(original), crop="32")
    image = dataset.split("train").image(0)
    assert image.shape == (224, 224) and image.dtype == np.uint8
    assert dataset.info["image_size"] == 224
    small = create("dataset", "curet", root=str(original), crop="32", size="32").split("train")
    source = np.asarray(Image.open(small.ids[0]).convert("L"))
    np.testing.assert_array_equal(small.image(0), source[8:40, 16:48])


def test_crop_arithmetic():
    image = np.arange(480 * 640, dtype=np.int64).reshape(480, 640).astype(np.uint8)
    assert crop_and_resize(image, 200, 200).shape == (200, 200)
    np.testing.assert_array_equal(crop_and_resize(image, 200, 200), image[140:340, 220:420])
    assert crop_and_resize(image, 0, 480).shape == (480, 480)  # largest centred square
    assert crop_and_resize(image[:100, :100], 200, 224).shape == (224, 224)  # smaller than the crop: kept whole


def test_curetgrey_png_layout_in_a_subfolder(tmp_path):
    curet_tree(tmp_path / "curetgrey", [5, 6], 4, "png", (200, 200))
    dataset = create("dataset", "curet", root=str(tmp_path), val_fraction="0.25", test_fraction="0.25")
    assert dataset.info["root"].endswith("curetgrey") and dataset.info["formats"] == [".png"]
    info = data_info(dataset, sample=3)
    assert info["splits"]["train"]["positives"]["sample05"] == 2 and info["splits"]["train"]["patients"] is None
    assert info["image_size"]["height"] == {"min": 224, "mean": 224.0, "max": 224}


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match=r"sample01: folder not found; `data_root` must hold sample01/01-001\.bmp"):
        create("dataset", "curet", root=str(tmp_path))
    curet_tree(tmp_path, [3], 3, "png", (30, 30))
    write_texture(tmp_path / "sample03" / "03-004.png", "truncated", (30, 30), 0)
    dataset = create("dataset", "curet", root=str(tmp_path), val_fraction="0", test_fraction="0")
    with pytest.raises(DataError, match=r"03-004\.png: unreadable or truncated"):
        dataset.split("train").image(3)
    assert create("dataset", "curet", root=str(tmp_path), skip_bad_images=True).info["skipped_images"] == 1
    write_texture(tmp_path / "sample03" / "04-001.png", "png", (30, 30), 0)
    with pytest.raises(DataError, match=r"04-001\.png: file of sample 04 inside sample03/"):
        create("dataset", "curet", root=str(tmp_path))
    with pytest.raises(DataError, match="unknown option 'resize'; did you mean 'size'"):
        create("dataset", "curet", root=str(tmp_path), resize="1")
    with pytest.raises(DataError, match="unknown option.*colour; valid: crop, size"):
        create("dataset", "curet", root=str(tmp_path), colour="1")
    with pytest.raises(DataError, match="option crop=-1: must be >= 0"):
        create("dataset", "curet", root=str(tmp_path), crop="-1")


def test_registered_by_this_distribution_without_importing_torch():
    assert registry("dataset").get("curet").provided_by == "txkit-curet"
    code = ("import sys, txkit, txkit_curet; txkit.registry('dataset'); "
            "import txkit_curet.curet; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TXKIT_PLUGINS": "txkit-curet"})


def test_splits_are_file_backed_and_declare_their_crop(original):
    dataset = check_dataset(create("dataset", "curet", root=str(original), crop="32", size="24"), file_backed=True)
    for split in dataset.splits.values():
        assert split.sources == split.ids and split.transform_key == "curet-centre-crop:32,bicubic:24"
        values, info = split.values(0)
        assert info["format"] == "image" and values.shape == (24, 24)  # read_intensity, then the crop
        np.testing.assert_array_equal(values, split.image(0))


def test_the_image_cache_key_follows_the_crop(original, tmp_path):
    cache = tmp_path / "cache"

    def cache_train(crop):
        code, output, errors = run_cli(["data", "cache", "curet", "--data-root", original, "--image-size", "24",
                                        "--data-option", f"crop={crop}", "--data-option", "size=24",
                                        "--cache-dir", cache, "--json"])
        assert code == 0, errors
        report = json.loads(output)
        return next(s for s in report["splits"] if s["split"] == "train"), Path(report["root"])

    (a, root), (b, _), (again, _) = cache_train("32"), cache_train("40"), cache_train("32")
    assert (a["status"], b["status"], again["status"]) == ("built", "built", "hit")
    assert a["key"] != b["key"] and a["key"] == again["key"]
    code, output, _ = run_cli(["data", "cache", "--list", "--json", "--cache-dir", cache])
    transforms = {c["key"]: c.get("transform") for c in json.loads(output)["caches"]}
    assert transforms[a["key"]] == "curet-centre-crop:32,bicubic:24"
    assert transforms[b["key"]] == "curet-centre-crop:40,bicubic:24"
    split = create("dataset", "curet", root=str(original), crop="32", size="24").split("train")
    cached = np.load(root / "images" / f"{a['key']}.npy")  # the disk cache: one (24, 24) uint8 image per file
    np.testing.assert_array_equal(cached[3], split.image(3))  # the cropped pixels are cached, not the file's


def test_crop_of_16_bit_values_keeps_their_range():
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64)
    out = crop_and_resize(values, 32, 40)
    assert out.shape == (40, 40) and out.dtype == np.float64
    square = values[8:40, 16:48]
    assert square.min() <= out.min() and out.max() <= square.max() and out.max() > 255
