import shutil
from pathlib import Path

import numpy as np
import pytest
from chest_layouts import nih_tree, write_image

from txkit import DataError, create
from txkit.testing import check_dataset, data_info
from txkit_chest_datasets.chestxray14 import FINDINGS, build

REAL_SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "data" / "nih-cxr14-samples"
# (Image Index, Finding Labels, Patient ID, View Position); labels are fixture values.
ENTRIES = [
    ("00000001_000.png", "Cardiomegaly", 1, "PA"),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, "PA"),
    ("00000002_000.png", "No Finding", 2, "AP"),
    ("00000003_000.png", "Hernia|Infiltration|Pleural_Thickening", 3, "PA"),
    ("00000004_000.png", "Mass|Nodule", 4, "AP"),
    ("00000005_000.png", "No Finding", 5, "PA"),
    ("00000006_000.png", "Effusion|Edema|Atelectasis", 6, "PA"),
    ("00000007_000.png", "Consolidation", 7, "AP"),
    ("00000008_000.png", "No Finding", 8, "PA"),
    ("00027426_000.png", "Pneumothorax|Pneumonia|Fibrosis", 27426, "PA"),
]
TEST = ["00000006_000.png", "00027426_000.png"]


@pytest.fixture(scope="module")
def tree(module_tmp):
    root = nih_tree(module_tmp("nih"), ENTRIES, TEST)
    for name in ("00000001_000.png", "00027426_000.png"):  # two real NIH images, official names
        shutil.copy(REAL_SAMPLES / name, root / "images" / name)
    write_image(root / "images" / "00000004_000.png", "rgba")
    return root


def test_official_lists_make_the_test_split_and_train_val_is_split_by_patient(tree):
    dataset = check_dataset(create("dataset", "chestxray14", root=str(tree)), file_backed=True)
    assert dataset.classes == FINDINGS and dataset.task == "multilabel"
    assert dataset.split("test").ids == TEST
    train, val = dataset.split("train"), dataset.split("val")
    assert len(train) + len(val) == 8 and len(val) >= 1
    assert set(train.groups).isdisjoint(val.groups)
    assert set(train.ids + val.ids).isdisjoint(TEST)


def test_pipe_separated_findings_and_no_finding(tree):
    dataset = build(str(tree), val_fraction="0.01")
    labels = dict(zip(dataset.split("train").ids + dataset.split("val").ids,
                      np.concatenate([dataset.split("train").labels, dataset.split("val").labels])))
    assert labels["00000002_000.png"].sum() == 0
    hernia = labels["00000003_000.png"]
    assert {FINDINGS[k] for k in np.flatnonzero(hernia)} == {"Hernia", "Infiltration", "Pleural_Thickening"}
    assert labels["00000001_001.png"].dtype == np.float32


def test_thesis_five_and_view_filter(tree):
    five = build(str(tree), labels="5")
    assert five.classes == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion"]
    assert five.split("test").labels[0].tolist() == [1, 0, 0, 1, 1]
    ap = build(str(tree), view="AP")
    assert sorted(ap.split("train").ids + ap.split("val").ids) == ["00000002_000.png", "00000004_000.png",
                                                                   "00000007_000.png"]
    assert len(ap.split("test")) == 0


def test_real_png_and_rgba_images_load_as_8bit_gray(tree):
    dataset = build(str(tree))
    real = dataset.split("test").image(1)
    assert real.shape == (512, 512) and real.dtype == np.uint8 and real.std() > 10
    info = data_info(dataset, sample=10)
    assert info["image_size"]["sampled"] == 10 and info["image_size"]["unreadable"] == 0
    assert info["splits"]["test"]["positives"]["Pneumothorax"] == 1


def test_batch_folders_and_the_2020_csv(tmp_path):
    root = nih_tree(tmp_path, ENTRIES[:6], ["00000005_000.png"], batches=True, csv_name="Data_Entry_2017_v2020.csv")
    dataset = build(str(root))
    assert dataset.info["entries"] == "Data_Entry_2017_v2020.csv"
    assert dataset.split("test").image(0).shape == (20, 24)


def test_missing_images_fail_naming_one_or_are_skipped(tmp_path):
    root = nih_tree(tmp_path, ENTRIES[:6], ["00000005_000.png"])
    (root / "images" / "00000003_000.png").unlink()
    write_image(root / "images" / "00000004_000.png", "truncated")
    with pytest.raises(DataError, match=r"00000003_000\.png: image not found in .*images/ or .*images_NNN/images/ "
                                        r"\(1 listed images are missing\).*`skip_bad_images`"):
        build(str(root))
    dataset = build(str(root), skip_bad_images=True)
    assert dataset.info["skipped_images"] == 2
    assert sum(len(s) for s in dataset.splits.values()) == 4


def test_wrong_root_and_damaged_files(tmp_path):
    with pytest.raises(DataError, match=r"Data_Entry_2017\.csv: not found; `data_root` must hold"):
        build(str(tmp_path))
    root = nih_tree(tmp_path / "a", [("00000001_000.png", "Cardiomegaly|Flu", 1, "PA")], [], images=False)
    with pytest.raises(DataError, match="unknown finding 'Flu'"):
        build(str(root))
    root = nih_tree(tmp_path / "b", ENTRIES[:2], ["00000099_000.png"], images=False)
    with pytest.raises(DataError, match=r"test_list\.txt: 00000099_000\.png is not in Data_Entry_2017\.csv"):
        build(str(root))
    with pytest.raises(DataError, match="unknown option.*colour"):
        build(str(root), colour="1")


def test_patient_gender_age_and_view_position_are_per_image_metadata(tmp_path):
    root = nih_tree(tmp_path, ENTRIES[:5], ["00000004_000.png"])
    table = root / "Data_Entry_2017.csv"
    lines = table.read_text().splitlines()
    ages_sexes = ["025,F", "25,F", "67,M", "41,M", "50,F"]  # an NIH-style "025" is 25
    lines[1:] = [line.replace(",58,M,", f",{age_sex},") for line, age_sex in zip(lines[1:], ages_sexes)]
    table.write_text("\n".join(lines) + "\n")
    dataset = build(str(root), val_fraction="0.01")
    seen = {}
    for name in ("train", "val"):
        split = dataset.split(name)
        seen.update({i: tuple(split.metadata[c][k] for c in ("sex", "age", "view")) for k, i in enumerate(split.ids)})
    assert seen["00000001_000.png"] == ("F", "<40", "PA")
    assert seen["00000002_000.png"] == ("M", ">=60", "AP")
    assert seen["00000003_000.png"] == ("M", "40-59", "PA")
    test = dataset.split("test")
    assert test.metadata["age"].tolist() == ["40-59"] and test.metadata["view"].tolist() == ["AP"]
