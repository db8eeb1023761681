import os
import subprocess
import sys

import numpy as np
import pytest
from mura_layout import mura_tree, write_image

from txkit import DataError, create, registry
from txkit.testing import check_dataset, data_info, train_tiny
from txkit_mura.mura import STUDY_TYPES

TRAIN = [("XR_SHOULDER", p, 1, p % 2) for p in range(1, 11)] + [
    ("XR_SHOULDER", 1, 2, 0), ("XR_HAND", 1, 1, 1), ("XR_HAND", 11, 1, 0), ("XR_WRIST", 12, 1, 1)]
VALID = [("XR_SHOULDER", 11185, 1, 1), ("XR_SHOULDER", 11186, 1, 0), ("XR_HAND", 11187, 1, 0)]


@pytest.fixture(scope="module")
def tree(module_tmp):
    return mura_tree(module_tmp("mura"), {"train": TRAIN, "valid": VALID})


def test_all_seven_study_types_by_default_with_study_ids(tree):
    dataset = check_dataset(create("dataset", "mura", root=str(tree)), file_backed=True)
    assert dataset.classes == ["normal", "abnormal"] and dataset.info["study_types"] == list(STUDY_TYPES)
    assert sum(len(dataset.split(s)) for s in ("train", "val")) == 2 * len(TRAIN)
    test = dataset.split("test")
    assert len(test) == 6
    assert test.studies.tolist() == [
        "valid/XR_SHOULDER/patient11185/study1_positive", "valid/XR_SHOULDER/patient11185/study1_positive",
        "valid/XR_SHOULDER/patient11186/study1_negative", "valid/XR_SHOULDER/patient11186/study1_negative",
        "valid/XR_HAND/patient11187/study1_negative", "valid/XR_HAND/patient11187/study1_negative"]
    assert test.labels.tolist() == [1, 1, 0, 0, 0, 0]  # every image takes its study's label


def test_study_type_selection_like_the_thesis_shoulder_only(tree):
    dataset = create("dataset", "mura", root=str(tree), study_types="shoulder")
    ids = [i for s in dataset.splits.values() for i in s.ids]
    assert ids and all("/XR_SHOULDER/" in i for i in ids)
    assert len(dataset.split("test")) == 4
    both = create("dataset", "mura", root=str(tree), study_types="XR_HAND,wrist")
    assert {i.split("/")[1] for s in both.splits.values() for i in s.ids} == {"XR_HAND", "XR_WRIST"}


def test_train_and_val_share_no_patient_and_studies_stay_whole(tree):
    dataset = create("dataset", "mura", root=str(tree), val_fraction="0.3", seed="2")
    train, val = dataset.split("train"), dataset.split("val")
    assert len(val) and set(train.groups).isdisjoint(val.groups)
    assert set(train.studies).isdisjoint(val.studies)
    # patient00001 has two shoulder studies and a hand study: all on one side
    sides = {name for name, s in (("train", train), ("val", val)) if "patient00001" in set(s.groups)}
    assert len(sides) == 1


def test_data_info_reports_studies_and_study_positives(tree):
    info = data_info(create("dataset", "mura", root=str(tree)), sample=4)
    test = info["splits"]["test"]
    assert test["images"] == 6 and test["patients"] == 3 and test["studies"] == 3
    assert test["positives"] == {"normal": 4, "abnormal": 2}
    assert test["study_positives"] == {"normal": 2, "abnormal": 1}
    assert info["image_size"]["sampled"] == 4 and info["image_size"]["height"]["max"] == 22


def test_rgb_images_load_as_gray(tree):
    image = create("dataset", "mura", root=str(tree)).split("test").image(1)
    assert image.dtype == np.uint8 and image.shape == (22, 18)


def test_wrong_root_names_the_file_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"train_image_paths\.csv: not found; expected MURA-v1.1/ holding"):
        create("dataset", "mura", root=str(tmp_path))


def test_unlabeled_study_bad_label_and_bad_options(tmp_path):
    folder = mura_tree(tmp_path, {"train": TRAIN[:3], "valid": VALID[:1]}, images=False)
    lines = (folder / "train_labeled_studies.csv").read_text().splitlines()
    (folder / "train_labeled_studies.csv").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match=r"train_labeled_studies\.csv: no label for study "
                                        r"train/XR_SHOULDER/patient00001/study1_positive/"):
        create("dataset", "mura", root=str(tmp_path))
    (folder / "train_labeled_studies.csv").write_text("\n".join([lines[0] + "x"] + lines[1:]) + "\n")
    with pytest.raises(DataError, match="line 1 .*expected study_folder/,0 or study_folder/,1"):
        create("dataset", "mura", root=str(tmp_path))
    with pytest.raises(DataError, match="unknown study type 'XR_KNEE'"):
        create("dataset", "mura", root=str(tmp_path), study_types="XR_KNEE")
    with pytest.raises(DataError, match="unknown option.*level; valid: study_types"):
        create("dataset", "mura", root=str(tmp_path), level="study")


def test_missing_images_fail_at_construction_and_bad_ones_are_skipped(tmp_path):
    folder = mura_tree(tmp_path / "empty", {"train": TRAIN[:3], "valid": VALID[:1]}, images=False)
    with pytest.raises(DataError, match=r"patient00001/study1_positive/image1\.png: not found \(first image"):
        create("dataset", "mura", root=str(folder))
    folder = mura_tree(tmp_path / "full", {"train": TRAIN[:3], "valid": VALID[:1]})
    write_image(folder / "train/XR_SHOULDER/patient00002/study1_negative/image1.png", "truncated")
    dataset = create("dataset", "mura", root=str(folder))
    bad = [s for s in dataset.splits.values() if "train/XR_SHOULDER/patient00002/study1_negative/image1.png" in s.ids]
    with pytest.raises(DataError, match="unreadable or truncated"):
        bad[0].image(bad[0].ids.index("train/XR_SHOULDER/patient00002/study1_negative/image1.png"))
    skipped = create("dataset", "mura", root=str(folder), skip_bad_images=True)
    assert skipped.info["skipped_images"] == 1 and sum(len(s) for s in skipped.splits.values()) == 7


def test_registered_by_this_distribution_without_importing_torch():
    assert registry("dataset").get("mura").provided_by == "txkit-mura"
    code = ("import sys, txkit, txkit_mura; txkit.registry('dataset'); "
            "import txkit_mura.mura; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TXKIT_PLUGINS": "txkit-mura"})


def test_evaluate_scores_studies_by_mean_image_probability_with_kappa(tree, tmp_path):
    run = train_tiny(tmp_path / "run", dataset="mura", data_root=str(tree), batch_size=8)
    metrics = run.evaluate("test")
    assert metrics["n"] == 6 and metrics["study_level"]["n"] == 3
    assert -1 <= metrics["kappa"] <= 1 and -1 <= metrics["study_level"]["kappa"] <= 1


def test_splits_are_file_backed_so_the_image_cache_applies(tree):
    dataset = check_dataset(create("dataset", "mura", root=str(tree), study_types="shoulder"), file_backed=True)
    for split in dataset.splits.values():
        assert split.sources == [os.path.join(tree, i) for i in split.ids] and len(split) > 0
        assert split.transform_key is None
        assert split.studies is not None and split.studies.tolist() == [i.rpartition("/")[0] for i in split.ids]
    test = dataset.split("test")
    assert test.ids[0] == "valid/XR_SHOULDER/patient11185/study1_positive/image1.png"
    assert test.groups.tolist()[:2] == ["patient11185", "patient11185"] and test.labels.tolist()[:2] == [1, 1]
