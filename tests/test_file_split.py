"""file_split, the public constructor of file-backed splits: reader, sources and a declared transform's cache key."""

import numpy as np
import pytest
from PIL import Image

from txkit.data.cache import CacheSettings, cache_key, open_images
from txkit.datasets import file_split
from txkit.datasets.intensity import IntensityRule

SIZE = 8


def write_images(folder, count=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        pixels = rng.integers(0, 65536, (12, 10), dtype=np.uint16) if i % 2 else rng.integers(0, 256, (12, 10),
                                                                                                 dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def top_rows(values):
    return values[:6]


def test_sources_reader_ids_and_studies(tmp_path):
    paths = write_images(tmp_path / "images")
    split = file_split(paths, [0, 1, 0, 1], ["p1", "p1", "p2", "p2"], ids=["a", "b", "c", "d"],
                       studies=["s1", "s1", "s2", "s2"])
    assert split.sources == [str(p) for p in paths] and split.ids == ["a", "b", "c", "d"] and split.named
    assert split.transform_key is None and split.studies.tolist() == ["s1", "s1", "s2", "s2"]
    values, info = split.values(1)
    assert info["unit"] == "16-bit" and values.max() > 255  # the intensity reader, not the 8-bit image
    assert split.image(1).dtype == np.uint8
    assert file_split(paths, [0, 1, 0, 1]).ids == [str(p) for p in paths]


def test_transform_applies_to_image_and_values_and_survives_subset(tmp_path):
    paths = write_images(tmp_path / "images")
    plain = file_split(paths, [0, 1, 0, 1])
    cropped = file_split(paths, [0, 1, 0, 1], transform=top_rows, transform_key="top:6")
    assert cropped.transform_key == "top:6"
    np.testing.assert_array_equal(cropped.image(0), plain.image(0)[:6])
    np.testing.assert_array_equal(cropped.values(1)[0], plain.values(1)[0][:6])
    part = cropped.subset([3, 1])
    assert part.transform_key == "top:6" and part.sources == [str(paths[3]), str(paths[1])]
    np.testing.assert_array_equal(part.values(1)[0], plain.values(1)[0][:6])


def test_a_transform_needs_its_key(tmp_path):
    paths = write_images(tmp_path / "images")
    with pytest.raises(TypeError, match="transform_key"):
        file_split(paths, [0, 1, 0, 1], transform=top_rows)
    with pytest.raises(TypeError, match="no transform"):
        file_split(paths, [0, 1, 0, 1], transform_key="top:6")


def test_the_cache_key_covers_the_declared_transform(tmp_path):
    paths = write_images(tmp_path / "images")
    rule = IntensityRule("auto")
    settings = CacheSettings(directory=str(tmp_path / "cache"), progress=False)
    plain = file_split(paths, [0, 1, 0, 1])
    six = file_split(paths, [0, 1, 0, 1], transform=top_rows, transform_key="top:6")
    four = file_split(paths, [0, 1, 0, 1], transform=lambda v: v[:4], transform_key="top:4")
    stores = [open_images(split, SIZE, rule, settings) for split in (plain, six, four)]
    assert [s.status for s in stores] == ["built"] * 3
    assert len({s.header["key"] for s in stores}) == 3
    assert stores[1].header["transform"] == "top:6" and "transform" not in stores[0].header
    assert not np.array_equal(stores[0].array, stores[1].array)
    assert open_images(six.subset([0, 1, 2, 3]), SIZE, rule, settings).status == "hit"
    # without a transform the key has no transform field: the key cache_key gives without transform_key
    assert stores[0].header["key"] == cache_key(plain.sources, SIZE, rule.key)
