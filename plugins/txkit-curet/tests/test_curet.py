import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from txkit.datasets.info import dataset_info
from txkit.errors import DataError
from txkit.plugins import create, registry
from txkit_curet.curet import CLASSES, crop_and_resize


def write_texture(path: Path, kind: str, size: tuple[int, int], seed: int) -> None:
    """A noise texture: original CUReT images are colour BMPs, curetgrey ones 8-bit PNGs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    gray = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    if kind == "bmp":
        Image.fromarray(np.stack([gray, gray, gray // 2], axis=-1), mode="RGB").save(path)
    else:
        Image.fromarray(gray).save(path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:60])


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
    dataset = create("dataset", "curet", root=str(original))
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
    info = dataset_info(dataset, sample=3)
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
    code = ("import sys, txkit_curet; from txkit.plugins import registry; registry('dataset'); "
            "import txkit_curet.curet; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TXKIT_PLUGINS": "txkit-curet"})


def test_splits_are_file_backed_and_declare_their_crop(original):
    dataset = create("dataset", "curet", root=str(original), crop="32", size="24")
    for split in dataset.splits.values():
        assert split.sources == split.ids and all(os.path.isfile(s) for s in split.sources)
        assert split._read is not None and split.transform_key == "curet-centre-crop:32,bicubic:24"
        values, info = split.values(0)
        assert info["format"] == "image" and values.shape == (24, 24)  # read_intensity, then the crop
        np.testing.assert_array_equal(values, split.image(0))


def test_the_image_cache_key_follows_the_crop(original, tmp_path):
    from txkit.data.cache import CacheSettings, open_images
    from txkit.datasets.intensity import IntensityRule, load_input

    settings = CacheSettings(directory=str(tmp_path / "cache"), progress=False)
    rule = IntensityRule("auto")

    def store(crop):
        split = create("dataset", "curet", root=str(original), crop=crop, size="24").split("train")
        return split, open_images(split, 24, rule, settings)

    (split32, a), (_, b), (_, again) = store("32"), store("40"), store("32")
    assert (a.status, b.status, again.status) == ("built", "built", "hit")
    assert a.header["key"] != b.header["key"] and a.header["key"] == again.header["key"]
    assert a.header["transform"] == "curet-centre-crop:32,bicubic:24"
    assert not np.array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.array[3], load_input(split32, 3, 24, rule))  # the cropped pixels are cached


def test_crop_of_16_bit_values_keeps_their_range():
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64)
    out = crop_and_resize(values, 32, 40)
    assert out.shape == (40, 40) and out.dtype == np.float64
    square = values[8:40, 16:48]
    assert square.min() <= out.min() and out.max() <= square.max() and out.max() > 255
