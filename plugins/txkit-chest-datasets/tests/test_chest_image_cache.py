"""CheXpert and ChestX-ray14 splits are file-backed (file_split): disk image cache, loader workers, and
`txkit data cache chexpert`."""

import json

import numpy as np
import pytest
from chest_layouts import chexpert_row, chexpert_tree, nih_tree, write_image

import txkit
from txkit.testing import check_dataset, run_cli, train_tiny

TRAIN = [chexpert_row(p, view=v, frontal=v == 1, Edema=p % 2, Atelectasis=-1 if p % 3 == 0 else 1,
                      Cardiomegaly=(p + 1) % 2) for p in range(1, 7) for v in (1, 2)]
VALID = [chexpert_row(64541 + p, split="valid", Edema=p % 2, Cardiomegaly=1 - p % 2) for p in range(3)]
NIH = [(f"0000000{p}_000.png", "Cardiomegaly" if p % 2 else "No Finding", p, "PA") for p in range(1, 7)]


@pytest.fixture(scope="module")
def chexpert(module_tmp):
    return chexpert_tree(module_tmp("chexpert"), TRAIN, VALID)


def test_chexpert_splits_read_files_with_the_intensity_reader(chexpert):
    dataset = check_dataset(txkit.create("dataset", "chexpert", root=str(chexpert), policy="ignore"), file_backed=True)
    for split in dataset.splits.values():
        assert split.ids != split.sources and split.transform_key is None  # ids: the CSV's paths; no transform
    train = dataset.split("train")
    assert train.ids[0] == TRAIN[0]["Path"] and train.sources[0] == str(chexpert / TRAIN[0]["Path"].split("/", 1)[1])
    assert train.groups.tolist()[:2] == ["patient00001", "patient00001"]
    assert np.isnan(train.labels[4, 0])  # U-Ignore on Atelectasis of patient 3: labels untouched by file_split
    assert dataset.split("val").sources == dataset.split("test").sources  # thesis protocol: valid.csv twice


def test_chestxray14_splits_read_files_and_keep_16_bit(tmp_path):
    root = nih_tree(tmp_path / "nih", NIH, ["00000006_000.png"])
    write_image(root / "images" / "00000002_000.png", "16bit")
    dataset = txkit.create("dataset", "chestxray14", root=str(root), val_fraction="0.3")
    check_dataset(dataset, file_backed=True)
    every = {i: (s, k) for s in dataset.splits.values() for k, i in enumerate(s.ids)}
    split, k = every["00000002_000.png"]
    assert split.sources[k] == str(root / "images" / "00000002_000.png")
    values, info = split.values(k)
    assert info["unit"] == "16-bit" and values.max() > 255 and split.image(k).dtype == np.uint8


def test_chexpert_trains_from_the_disk_cache_that_data_cache_then_finds(chexpert, tmp_path):
    cache = str(tmp_path / "cache")
    run = train_tiny(tmp_path / "run", dataset="chexpert", data_root=str(chexpert), batch_size=4, num_workers=2,
                     cache_dir=cache)
    assert run.summary["status"] == "completed" and run.summary["image_cache"] == {"train": "built", "val": "built"}
    code, output, errors = run_cli(["data", "cache", "chexpert", "--data-root", chexpert, "--image-size", "32",
                                    "--cache-dir", cache, "--json"])
    assert code == 0, errors
    assert [(s["split"], s["status"]) for s in json.loads(output)["splits"]] == [("train", "hit"), ("val", "hit"),
                                                                                ("test", "hit")]


def test_txkit_data_cache_builds_a_plugin_datasets_cache_then_lists_it(chexpert, tmp_path):
    cache = str(tmp_path / "cache")
    args = ["data", "cache", "chexpert", "--data-root", str(chexpert), "--image-size", "224",
            "--data-option", "policy=zeros", "--cache-dir", cache]
    code, output, errors = run_cli([*args, "--json"])
    assert code == 0, errors
    report = json.loads(output)
    assert report["image_size"] == 224
    assert [(s["split"], s["status"]) for s in report["splits"]] == [("train", "built"), ("val", "built"),
                                                                     ("test", "hit")]  # test = val = valid.csv
    code, output, errors = run_cli(["data", "cache", "--list", "--json", "--cache-dir", cache])
    assert code == 0, errors
    caches = json.loads(output)["caches"]
    assert sorted(c["label"] for c in caches) == ["chexpert train", "chexpert val"]
    assert {(c["size"], c["images"]) for c in caches} == {(224, len(TRAIN)), (224, len(VALID))}
    code, table, _ = run_cli(["data", "cache", "--list", "--cache-dir", cache])
    assert code == 0 and "chexpert train" in table and "224 px" in table
    code, again, _ = run_cli(args)
    assert code == 0 and "built" not in again and "hit" in again
