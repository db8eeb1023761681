"""CheXpert and ChestX-ray14 splits are file-backed (file_split): disk image cache, loader workers through the
shared-memory batch ring, and `txkit data cache chexpert`."""

import json
import os

import numpy as np
import pytest
from chest_layouts import chexpert_row, chexpert_tree, nih_tree, write_image
from click.testing import CliRunner

from txkit.plugins import create

TRAIN = [chexpert_row(p, view=v, frontal=v == 1, Edema=p % 2, Atelectasis=-1 if p % 3 == 0 else 1,
                      Cardiomegaly=(p + 1) % 2) for p in range(1, 7) for v in (1, 2)]
VALID = [chexpert_row(64541 + p, split="valid", Edema=p % 2, Cardiomegaly=1 - p % 2) for p in range(3)]
NIH = [(f"0000000{p}_000.png", "Cardiomegaly" if p % 2 else "No Finding", p, "PA") for p in range(1, 7)]


@pytest.fixture(scope="module")
def chexpert(module_tmp):
    return chexpert_tree(module_tmp("chexpert"), TRAIN, VALID)


def assert_file_backed(split, ids_are_sources=False):
    assert split.sources is not None and len(split.sources) == len(split) > 0
    assert all(os.path.isfile(source) for source in split.sources)
    assert split._read is not None and split.transform_key is None
    assert split.values(0)[1]["format"] == "image"  # read_intensity's info, not the 8-bit fallback's
    assert (split.ids == split.sources) == ids_are_sources


def test_chexpert_splits_read_files_with_the_intensity_reader(chexpert):
    dataset = create("dataset", "chexpert", root=str(chexpert), policy="ignore")
    for split in dataset.splits.values():
        assert_file_backed(split)
    train = dataset.split("train")
    assert train.ids[0] == TRAIN[0]["Path"] and train.sources[0] == str(chexpert / TRAIN[0]["Path"].split("/", 1)[1])
    assert train.groups.tolist()[:2] == ["patient00001", "patient00001"]
    assert np.isnan(train.labels[4, 0])  # U-Ignore on Atelectasis of patient 3: labels untouched by file_split
    assert dataset.split("val").sources == dataset.split("test").sources  # thesis protocol: valid.csv twice


def test_chestxray14_splits_read_files_and_keep_16_bit(tmp_path):
    root = nih_tree(tmp_path / "nih", NIH, ["00000006_000.png"])
    write_image(root / "images" / "00000002_000.png", "16bit")
    dataset = create("dataset", "chestxray14", root=str(root), val_fraction="0.3")
    for split in dataset.splits.values():
        assert_file_backed(split)
    every = {i: (s, k) for s in dataset.splits.values() for k, i in enumerate(s.ids)}
    split, k = every["00000002_000.png"]
    assert split.sources[k] == str(root / "images" / "00000002_000.png")
    values, info = split.values(k)
    assert info["unit"] == "16-bit" and values.max() > 255 and split.image(k).dtype == np.uint8


def test_chexpert_trains_from_the_disk_cache_with_workers_through_the_ring(chexpert, tmp_path, monkeypatch):
    from txkit.training import session
    from txkit.data.batch_ring import RingLoader
    from txkit.config import TrainConfig
    from txkit.data.loader import Loaders, TensorSplit, cache_settings, input_rule

    made = []
    original = Loaders._make

    def recording(self, data, batch_len, sampler):
        loader = original(self, data, batch_len, sampler)
        made.append((data, loader))
        return loader

    monkeypatch.setattr(Loaders, "_make", recording)
    cfg = TrainConfig(dataset="chexpert", data_root=str(chexpert), backbone="resnet18", weights="none",
                      strategy="full", image_size=32, epochs=1, batch_size=4, seed=0, device="cpu", num_workers=2,
                      cache_dir=str(tmp_path / "cache"))
    _, summary = session.train(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["image_cache"] == {"train": "built", "val": "built"}
    train_data, train_loader = next((d, lo) for d, lo in made if len(d) == len(TRAIN))
    assert train_data.split.sources is not None and train_data.cache_status == "built"
    assert isinstance(train_loader, RingLoader) and (train_loader.ring.stamps >= 0).any()  # batches came via the ring
    dataset = create("dataset", "chexpert", root=str(chexpert))
    again = TensorSplit(dataset.split("train"), 32, dataset.task, input_rule(cfg, dataset), cache_settings(cfg))
    assert again.cache_status == "hit" and again.store.path == train_data.store.path


def test_txkit_data_cache_builds_a_plugin_datasets_cache_then_lists_it(chexpert, tmp_path):
    from txkit.cli.main import build_cli

    cache = str(tmp_path / "cache")
    runner = CliRunner()
    args = ["data", "cache", "chexpert", "--data-root", str(chexpert), "--image-size", "224",
            "--data-option", "policy=zeros", "--cache-dir", cache]
    built = runner.invoke(build_cli(), [*args, "--json"])
    assert built.exit_code == 0, built.output
    report = json.loads(built.output)
    assert report["image_size"] == 224
    assert [(s["split"], s["status"]) for s in report["splits"]] == [("train", "built"), ("val", "built"),
                                                                     ("test", "hit")]  # test = val = valid.csv
    listed = runner.invoke(build_cli(), ["data", "cache", "--list", "--json", "--cache-dir", cache])
    assert listed.exit_code == 0, listed.output
    caches = json.loads(listed.output)["caches"]
    assert sorted(c["label"] for c in caches) == ["chexpert train", "chexpert val"]
    assert {(c["size"], c["images"]) for c in caches} == {(224, len(TRAIN)), (224, len(VALID))}
    table = runner.invoke(build_cli(), ["data", "cache", "--list", "--cache-dir", cache])
    assert table.exit_code == 0 and "chexpert train" in table.output and "224 px" in table.output
    again = runner.invoke(build_cli(), args)
    assert again.exit_code == 0 and "built" not in again.output and "hit" in again.output
