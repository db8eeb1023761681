import os
import subprocess
import sys

import numpy as np
import pytest
from chest_layouts import tb_tree, write_image

from txkit import DataError, create, registry
from txkit.testing import check_dataset

LABELS = [0] * 20 + [1] * 10


@pytest.fixture(scope="module")
def montgomery(module_tmp):
    root = module_tmp("tb")
    folder = tb_tree(root, "MontgomerySet", "MCUCXR", LABELS)
    write_image(folder / "CXR_png" / "MCUCXR_0003_0.png", "16bit")
    return root


def test_labels_come_from_the_last_digit_and_the_split_is_70_20_10(montgomery):
    dataset = check_dataset(create("dataset", "montgomery", root=str(montgomery)), file_backed=True)
    assert dataset.classes == ["normal", "tuberculosis"]
    sizes = {name: len(split) for name, split in dataset.splits.items()}
    assert sizes == {"train": 21, "val": 6, "test": 3}
    for split in dataset.splits.values():
        for image_id, label in zip(split.ids, split.labels):
            assert image_id.endswith(f"_{label}.png")
    assert np.bincount(dataset.split("test").labels).tolist() == [2, 1]


def test_same_seed_same_split_and_the_roots_users_give(montgomery):
    a = create("dataset", "montgomery", root=str(montgomery), seed="3")
    for root in (montgomery / "MontgomerySet", montgomery / "MontgomerySet" / "CXR_png"):
        assert create("dataset", "montgomery", root=str(root), seed="3").split("val").ids == a.split("val").ids


def test_16bit_image_is_read_as_8bit_gray(montgomery):
    dataset = create("dataset", "montgomery", root=str(montgomery))
    for split in dataset.splits.values():
        for i, image_id in enumerate(split.ids):
            if image_id.endswith("MCUCXR_0003_0.png"):
                image = split.image(i)
                assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255


def test_shenzhen(tmp_path):
    tb_tree(tmp_path, "ChinaSet_AllFiles", "CHNCXR", [0, 1] * 10)
    dataset = create("dataset", "shenzhen", root=str(tmp_path), val_fraction="0.25", test_fraction="0.25")
    assert sum(len(s) for s in dataset.splits.values()) == 20
    assert dataset.info["official_counts"] == "662 images: 326 normal, 336 TB"


def test_bad_inputs(tmp_path, montgomery):
    with pytest.raises(DataError, match=r"CXR_png: folder not found; `data_root` must point to "
                                        r"MontgomerySet/CXR_png/MCUCXR_0001_0\.png"):
        create("dataset", "montgomery", root=str(tmp_path))
    folder = tb_tree(tmp_path, "MontgomerySet", "MCUCXR", [0, 1, 0])
    write_image(folder / "CXR_png" / "MCUCXR_0004.png")
    with pytest.raises(DataError, match=r"MCUCXR_0004\.png: file name does not follow"):
        create("dataset", "montgomery", root=str(tmp_path))
    (folder / "CXR_png" / "MCUCXR_0004.png").unlink()
    write_image(folder / "CXR_png" / "MCUCXR_0002_1.png", "truncated")
    dataset = create("dataset", "montgomery", root=str(tmp_path), skip_bad_images=True)
    assert dataset.info["skipped_images"] == 1
    with pytest.raises(DataError, match="must be below 1"):
        create("dataset", "montgomery", root=str(montgomery), val_fraction="0.5", test_fraction="0.5")


def test_entries_belong_to_this_distribution_and_the_plugin_imports_no_torch():
    for name in ("chexpert", "chestxray14", "montgomery", "shenzhen"):
        assert registry("dataset").get(name).provided_by == "txkit-chest-datasets"
    code = ("import sys, txkit, txkit_chest_datasets; txkit.registry('dataset'); "
            "import txkit_chest_datasets.chexpert, txkit_chest_datasets.chestxray14, txkit_chest_datasets.tb; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "TXKIT_PLUGINS": "txkit-chest-datasets"}  # other plugins may import torch themselves
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
