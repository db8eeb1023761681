"""`data info` counts under the thesis policies, on train.csv files whose label distribution is constructed here."""

import json
import time

import numpy as np
import pytest
from chest_layouts import chexpert_row, write_chexpert_csv, write_image, write_large_train_csv

from txkit.testing import data_info, run_cli
from txkit_chest_datasets.chexpert import build, subset_rows

FIVE = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
# Table 4.2 of the thesis, row "223414 (100%)": positives per observation after the Table 4.1 policies.
TABLE_4_2_FULL = {"Atelectasis": 67115, "Cardiomegaly": 27000, "Consolidation": 14783, "Edema": 65230,
                  "Pleural Effusion": 97815}
TABLE_4_2_SIZES = {0.1: 22341, 0.05: 11171, 0.01: 2234, 0.005: 1117, 0.002: 447, 0.001: 223}
# A split of each count into positive + uncertain cells. Under U-Ones both count, under U-Zeros only positives,
# so a loader that applies Table 4.1 must give exactly TABLE_4_2_FULL.
POSITIVE = {"Atelectasis": 33376, "Cardiomegaly": 27000, "Consolidation": 14783, "Edema": 52246,
            "Pleural Effusion": 86187}
UNCERTAIN = {"Atelectasis": 33739, "Cardiomegaly": 8087, "Consolidation": 27742, "Edema": 12984,
             "Pleural Effusion": 11628}
ROWS = 223_414


def _small_folder(base, train_rows):
    folder = base / "CheXpert-v1.0-small"
    write_chexpert_csv(folder / "train.csv", train_rows)
    write_chexpert_csv(folder / "valid.csv", [chexpert_row(64541, split="valid", Edema=1)])
    for row in (train_rows[0], chexpert_row(64541, split="valid")):
        write_image(base / row["Path"])
    return folder


def test_data_info_positives_follow_each_policy_on_a_constructed_distribution(tmp_path):
    # Per observation: 3 positive, 2 uncertain, 4 negative, 3 blank rows (12 rows, 6 patients).
    rows = []
    for i in range(12):
        code = 1 if i < 3 else -1 if i < 5 else 0 if i < 9 else None
        rows.append(chexpert_row(i // 2 + 1, view=i % 2 + 1, **{name.replace(" ", "_"): code for name in FIVE}))
    folder = _small_folder(tmp_path, rows)
    thesis = data_info(build(str(folder)), sample=0)["splits"]["train"]
    assert thesis["images"] == 12 and thesis["patients"] == 6
    assert thesis["positives"] == {"Atelectasis": 5, "Cardiomegaly": 3, "Consolidation": 3, "Edema": 5,
                                   "Pleural Effusion": 5}
    ignore = data_info(build(str(folder), policy="ignore"), sample=0)["splits"]["train"]
    assert ignore["positives"] == dict.fromkeys(FIVE, 3) and ignore["ignored"] == dict.fromkeys(FIVE, 2)
    multi = data_info(build(str(folder), policy="multiclass"), sample=0)["splits"]["train"]["positives"]
    assert multi["Edema:positive"] == 3 and multi["Edema:uncertain"] == 2 and multi["Edema:negative"] == 7


@pytest.fixture(scope="module")
def official_sized(module_tmp):
    base = module_tmp("chexpert-full")
    folder = base / "CheXpert-v1.0-small"
    write_large_train_csv(folder / "train.csv", ROWS, POSITIVE, UNCERTAIN)
    write_chexpert_csv(folder / "valid.csv", [chexpert_row(64541, split="valid", Edema=1)])
    write_image(folder / "train/patient00001/study1/view1_frontal.jpg")
    write_image(folder / "valid/patient64541/study1/view1_frontal.jpg")
    return folder


def test_223414_rows_index_in_seconds_and_give_the_100_percent_row_of_table_4_2(official_sized):
    wall, cpu = time.perf_counter(), time.process_time()
    dataset = build(str(official_sized))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"indexed {ROWS} rows in {wall:.2f} s ({cpu:.2f} s CPU)")
    assert wall < 30  # 1-3 s of CPU; the margin is for a loaded shared machine. No image is opened.
    train = data_info(dataset, sample=0)["splits"]["train"]
    assert train["images"] == ROWS
    assert train["positives"] == TABLE_4_2_FULL


def test_data_info_json_on_the_official_sized_csv(official_sized):
    code, output, errors = run_cli(["data", "info", "chexpert", "--data-root", official_sized.parent,
                                    "--data-option", "subset=0.001", "--data-option", "subset_seed=8",
                                    "--sample", "0", "--json"])
    assert code == 0, errors
    report = json.loads(output)
    assert report["splits"]["train"]["images"] == 223
    assert report["splits"]["val"]["images"] == report["splits"]["test"]["images"] == 1
    assert report["info"]["subset"] == {"fraction": 0.001, "seed": 8, "by": "images"}


@pytest.mark.parametrize("fraction, size", sorted(TABLE_4_2_SIZES.items()))
def test_subset_sizes_of_table_4_2(fraction, size):
    rows = np.arange(ROWS)
    patients = np.asarray([f"patient{i // 4:05d}" for i in range(ROWS)])
    for seed in (8, 8829, 2901):
        picked = subset_rows(rows, patients, fraction, seed, "images")
        assert len(picked) == size
    assert np.array_equal(subset_rows(rows, patients, fraction, 8, "images"),
                          np.sort(np.random.RandomState(8).choice(ROWS, size=size, replace=False)))
