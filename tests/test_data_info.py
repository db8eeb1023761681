"""`txkit data info` on the built-in datasets (synthetic-dld, medmnist on the real PneumoniaMNIST, imagefolder,
csv) and on hand-made TxDatasets for the multi-label and study-level cases."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from txkit.cli.data import COMMANDS, data_group
from txkit.datasets.base import Split, TxDataset
from txkit.datasets.info import dataset_info
from txkit.errors import DataError

PNEUMONIAMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def _invoke(*args):
    return CliRunner().invoke(data_group, ["info", *args])


def test_medmnist_counts_match_the_data_readme():
    result = _invoke("medmnist", "--data-root", str(PNEUMONIAMNIST), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    splits = report["splits"]
    assert {name: s["images"] for name, s in splits.items()} == {"train": 3882, "val": 524, "test": 624}
    assert splits["train"]["positives"] == {"normal": 388, "pneumonia": 3494}
    assert splits["val"]["positives"] == {"normal": 135, "pneumonia": 389}
    assert splits["test"]["positives"] == {"normal": 234, "pneumonia": 390}
    assert splits["train"]["patients"] is None
    assert report["image_size"] == {"sampled": 32, "unreadable": 0, "height": {"min": 28, "mean": 28.0, "max": 28},
                                    "width": {"min": 28, "mean": 28.0, "max": 28}}


def test_synthetic_dld_with_options_and_the_rich_table():
    result = _invoke("synthetic-dld", "--data-option", "per_class=3", "--data-option", "size=32", "--sample", "5")
    assert result.exit_code == 0, result.output
    assert "synthetic-dld (multiclass, 7 classes)" in result.output
    assert "honeycombing" in result.output and "5 sampled image(s): height 32-32" in result.output
    report = dataset_info(_synthetic(), sample=0)
    assert report["splits"]["val"]["positives"] == dict.fromkeys(report["classes"], 3)
    assert report["image_size"] == {"sampled": 0, "unreadable": 0}


def _synthetic():
    from txkit.plugins import create

    return create("dataset", "synthetic-dld", per_class="3", size="32")


def test_imagefolder_and_csv_builtins(tmp_path):
    for i, cls in enumerate(["a", "a", "a", "b", "b", "b", "b"]):
        path = tmp_path / "folder" / cls / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10 + i, 12), 40 * i, dtype=np.uint8)).save(path)
    folder = dataset_info(_create("imagefolder", tmp_path / "folder", val_fraction="0.3", test_fraction="0"))
    assert sum(s["images"] for s in folder["splits"].values()) == 7
    assert folder["image_size"]["sampled"] == 7 and folder["image_size"]["height"]["max"] == 16
    table = tmp_path / "labels.csv"
    rows = ["path,label,split,group"] + [f"folder/{c}/{i}.png,{c},{s},p{i // 2}" for i, (c, s) in
                                         enumerate(zip("aaabbbb", ["train"] * 4 + ["test"] * 2 + ["val"]))]
    table.write_text("\n".join(rows) + "\n")
    result = _invoke("csv", "--data-root", str(table), "--json")
    report = json.loads(result.output)
    assert report["splits"]["train"] == {"images": 4, "patients": 2, "positives": {"a": 3, "b": 1}}


def _create(name, root, **options):
    from txkit.plugins import create

    return create("dataset", name, root=str(root), **options)


def test_multilabel_counts_positives_ignored_and_soft_labels():
    labels = np.array([[1, 0], [np.nan, 1], [0.7, np.nan], [1, 1]], dtype=np.float32)
    dataset = TxDataset("toy", ["A", "B"], {"train": Split(lambda i: np.zeros((4, 6), np.uint8), labels,
                                                           groups=["p1", "p1", "p2", "p3"])}, task="multilabel")
    train = dataset_info(dataset, sample=2)["splits"]["train"]
    assert train == {"images": 4, "patients": 3, "positives": {"A": 3, "B": 2}, "ignored": {"A": 1, "B": 1},
                     "soft": {"A": 1, "B": 0}}


def test_studies_are_counted_per_split():
    split = Split(lambda i: np.zeros((3, 3), np.uint8), np.array([1, 1, 0, 0, 0]), groups=["p", "p", "q", "q", "r"],
                  studies=["s1", "s1", "s2", "s2", "s3"])
    info = dataset_info(TxDataset("toy", ["normal", "abnormal"], {"test": split}), sample=0)["splits"]["test"]
    assert info["studies"] == 3 and info["study_positives"] == {"normal": 2, "abnormal": 1}


def test_unreadable_sampled_images_are_reported_not_raised(tmp_path):
    def load(i):
        raise DataError(f"/data/{i}.png: unreadable or truncated image")

    dataset = TxDataset("toy", ["x"], {"train": Split(load, np.zeros(3, dtype=np.int64))})
    stats = dataset_info(dataset, sample=8)["image_size"]
    assert stats["sampled"] == 3 and stats["unreadable"] == 3 and stats["first_error"].startswith("/data/")


def test_wrong_root_and_unknown_option_are_one_line_errors(tmp_path):
    result = _invoke("medmnist", "--data-root", str(tmp_path / "nothing.npz"))
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert "nothing.npz: file not found" in result.output
    result = _invoke("synthetic-dld", "--data-option", "colour=red")
    assert result.exit_code == 1 and "unknown option(s) colour" in result.output
    result = _invoke("no-such-dataset")
    assert result.exit_code == 1 and "Error:" in result.output


def test_commands_export_and_no_torch_import():
    assert COMMANDS == [data_group]
    code = ("import sys; from click.testing import CliRunner; from txkit.cli.data import data_group; "
            f"r = CliRunner().invoke(data_group, ['info', 'medmnist', '--data-root', {str(PNEUMONIAMNIST)!r}]); "
            "assert r.exit_code == 0, r.output; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TXKIT_PLUGINS": "none"})
