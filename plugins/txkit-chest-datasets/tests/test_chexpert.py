import numpy as np
import pytest
from chest_layouts import chexpert_row, chexpert_tree, write_image

from txkit import DataError, create
from txkit.testing import check_dataset
from txkit_chest_datasets.chexpert import build

FIVE = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]


def _train_rows():
    return [
        chexpert_row(1, view=1, Atelectasis=-1, Cardiomegaly=-1, Edema=1, Pleural_Effusion=-1),
        chexpert_row(1, view=2, frontal=False, Atelectasis=0, Consolidation=-1, Fracture=-1),
        chexpert_row(2, projection="PA", Cardiomegaly=1, Pleural_Effusion=0, Edema=-1),
        chexpert_row(3, projection="PA", No_Finding=1),
        chexpert_row(3, study=2, view=2, frontal=False, Consolidation=1),
        chexpert_row(4, Edema=0, Atelectasis=1),
        chexpert_row(5, projection="PA", Pleural_Effusion=1, Support_Devices=-1),
        chexpert_row(6, Consolidation=-1),
        chexpert_row(7, Cardiomegaly=-1, Atelectasis=-1),
        chexpert_row(8, projection="PA", Edema=1),
    ]


def _valid_rows():
    return [chexpert_row(64541, split="valid", Edema=1, Atelectasis=1),
            chexpert_row(64542, split="valid", projection="PA", Cardiomegaly=1),
            chexpert_row(64542, view=2, frontal=False, split="valid", Cardiomegaly=1)]


@pytest.fixture(scope="module")
def tree(module_tmp):
    base = module_tmp("chexpert")
    return chexpert_tree(base, _train_rows(), _valid_rows())


def test_registered_and_built_through_the_registry(tree):
    dataset = check_dataset(create("dataset", "chexpert", root=str(tree)), file_backed=True)
    assert dataset.task == "multilabel"
    assert dataset.classes == FIVE


def test_thesis_policies_of_table_4_1_are_the_default(tree):
    dataset = build(str(tree))
    labels = dataset.split("train").labels
    assert dataset.info["policies"] == {"Atelectasis": "ones", "Cardiomegaly": "zeros", "Consolidation": "zeros",
                                        "Edema": "ones", "Pleural Effusion": "ones"}
    assert labels.dtype == np.float32 and labels.shape == (10, 5)
    np.testing.assert_array_equal(labels[0], [1, 0, 0, 1, 1])  # Ate U-Ones, Card U-Zeros, PE U-Ones
    np.testing.assert_array_equal(labels[2], [0, 1, 0, 1, 0])  # Edema uncertain -> 1
    np.testing.assert_array_equal(labels[7], [0, 0, 0, 0, 0])  # Consolidation uncertain -> 0
    np.testing.assert_array_equal(labels[3], [0, 0, 0, 0, 0])  # blank = negative


def test_one_policy_for_all_labels_with_per_label_overrides(tree):
    dataset = build(str(tree), policy="ones", policy_Cardiomegaly="zeros", policy_pleural_effusion="U-Ignore")
    labels = dataset.split("train").labels
    assert dataset.info["policies"]["Consolidation"] == "ones"
    assert labels[7, 2] == 1  # Consolidation uncertain -> 1 under policy=ones
    assert labels[8, 1] == 0  # Cardiomegaly uncertain -> 0 (override)
    assert np.isnan(labels[0, 4]) and labels[4, 4] == 0  # PE uncertain ignored, PE blank stays 0


def test_u_zeros_and_u_ignore(tree):
    zeros = build(str(tree), policy="zeros").split("train").labels
    ignore = build(str(tree), policy="ignore").split("train").labels
    assert not np.isnan(zeros).any() and zeros[0].tolist() == [0, 0, 0, 1, 0]
    assert np.isnan(ignore[0, [0, 1, 4]]).all() and ignore[0, 3] == 1


def test_u_multiclass_turns_an_observation_into_three_one_hot_columns(tree):
    dataset = build(str(tree), policy_Edema="multiclass")
    assert dataset.classes == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema:negative", "Edema:positive",
                               "Edema:uncertain", "Pleural Effusion"]
    edema = dataset.split("train").labels[:, 3:6]
    np.testing.assert_array_equal(edema[[0, 2, 3, 5]], [[0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]])
    assert (edema.sum(axis=1) == 1).all()
    assert dataset.info["label_layout"] == {"Edema": ["Edema:negative", "Edema:positive", "Edema:uncertain"]}


def test_u_selftrained_needs_a_teacher_csv(tree):
    with pytest.raises(DataError, match="soft_labels=CSV with columns Path,Atelectasis"):
        build(str(tree), policy_Atelectasis="selftrained")


def test_u_selftrained_uses_the_teachers_probabilities(tree, tmp_path):
    soft = tmp_path / "teacher.csv"
    soft.write_text("Path,Atelectasis\n"
                    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,0.25\n"
                    "/elsewhere/train/patient00007/study1/view1_frontal.jpg,0.75\n")
    dataset = build(str(tree), policy_Atelectasis="U-SelfTrained", soft_labels=str(soft))
    atelectasis = dataset.split("train").labels[:, 0]
    assert atelectasis[0] == pytest.approx(0.25) and atelectasis[8] == pytest.approx(0.75)
    assert atelectasis[5] == 1 and atelectasis[1] == 0  # certain labels are kept


def test_u_selftrained_names_an_uncovered_image(tree, tmp_path):
    soft = tmp_path / "teacher.csv"
    soft.write_text("Path,Atelectasis\nCheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,0.25\n")
    with pytest.raises(DataError, match="no soft label for .*patient00007"):
        build(str(tree), policy_Atelectasis="selftrained", soft_labels=str(soft))


def test_fourteen_observations_in_csv_order(tree):
    dataset = build(str(tree), labels="14")
    assert len(dataset.classes) == 14 and dataset.classes[0] == "No Finding"
    labels = dataset.split("train").labels
    assert labels[3, 0] == 1  # No Finding
    fracture = dataset.classes.index("Fracture")
    assert np.isnan(labels[1, fracture])  # labels outside Table 4.1 default to U-Ignore
    assert dataset.info["policies"]["Atelectasis"] == "ones"


def test_a_custom_label_list(tree):
    assert build(str(tree), labels="edema, pleural_effusion").classes == ["Edema", "Pleural Effusion"]


def test_default_protocol_trains_on_all_of_train_csv_and_validates_on_valid_csv(tree):
    dataset = build(str(tree))
    assert len(dataset.split("train")) == 10
    assert dataset.split("val").ids == dataset.split("test").ids
    assert dataset.split("test").ids[0] == "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg"


def test_val_fraction_holds_out_whole_patients_with_a_seed(tree):
    a = build(str(tree), val_fraction="0.3", seed="4")
    b = build(str(tree), val_fraction="0.3", seed="4")
    train, val = a.split("train"), a.split("val")
    assert set(train.groups).isdisjoint(val.groups)
    assert len(set(val.groups)) == 2 and len(train) + len(val) == 10  # round(0.3 * 8 patients)
    assert val.ids == b.split("val").ids
    assert len(a.split("test")) == 3


def test_view_and_projection_filters(tree):
    frontal = build(str(tree), view="frontal")
    lateral = build(str(tree), view="lateral")
    pa = build(str(tree), projection="PA")
    assert len(frontal.split("train")) == 8 and len(lateral.split("train")) == 2
    assert all("lateral" in i for i in lateral.split("train").ids)
    assert len(pa.split("train")) == 4 and len(pa.split("test")) == 1
    assert len(build(str(tree), projection="ap,pa").split("train")) == 8


def test_subset_by_images_draws_like_pandas_sample(tree):
    dataset = build(str(tree), subset="0.5", subset_seed="8")
    chosen = np.sort(np.random.RandomState(8).choice(10, size=5, replace=False))
    assert dataset.split("train").ids == [_train_rows()[i]["Path"] for i in chosen]
    assert build(str(tree), subset="0.5", subset_seed="8").split("train").ids == dataset.split("train").ids
    assert build(str(tree), subset="0.5", subset_seed="2901").split("train").ids != dataset.split("train").ids


def test_subset_by_patients_keeps_whole_patients(tree):
    full = build(str(tree)).split("train")
    subset = build(str(tree), subset="0.3", subset_by="patients", subset_seed="1").split("train")
    assert len(subset) >= 3
    for patient in set(subset.groups):
        assert (subset.groups == patient).sum() == (full.groups == patient).sum()


def test_images_load_as_8bit_gray_and_the_parent_folder_works_as_root(tree):
    dataset = build(str(tree.parent))
    lateral = dataset.split("train").image(1)  # written as RGB
    assert lateral.dtype == np.uint8 and lateral.ndim == 2
    assert dataset.split("test").image(0).shape == (20, 24)


@pytest.mark.parametrize("options, message", [
    ({"policy": "maybe"}, "policy='maybe' must be one of ignore, zeros, ones, selftrained, multiclass"),
    ({"policy_Heart": "ones"}, "no observation 'Heart'"),
    ({"policy_Fracture": "ones"}, "'Fracture' is not in the label set"),
    ({"labels": "Atelectasis,Heart"}, "unknown name 'Heart'"),
    ({"view": "oblique"}, "option view=oblique: must be one of all, frontal, lateral"),
    ({"projection": "XY"}, "'XY' is not an AP/PA value"),
    ({"subset": "0"}, "option subset=0: must be > 0"),
    ({"val_fraction": "1.5"}, "val_fraction"),
    ({"colour": "1"}, "unknown option.*colour; valid: labels, policy, .*policy_<LABEL>"),
    ({"veiw": "all"}, "unknown option 'veiw'; did you mean 'view'"),
])
def test_bad_options_fail_with_one_line(tree, options, message):
    with pytest.raises(DataError, match=message):
        build(str(tree), **options)


def test_wrong_root_names_the_file_it_looked_for_and_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"train\.csv: not found; expected CheXpert-v1.0-small/ holding train.csv"):
        build(str(tmp_path))
    with pytest.raises(DataError, match="needs `data_root`"):
        build(None)


def test_missing_valid_csv_and_damaged_csvs(tmp_path):
    folder = chexpert_tree(tmp_path, _train_rows()[:2], _valid_rows()[:1], images=False)
    (folder / "valid.csv").unlink()
    with pytest.raises(DataError, match=r"valid\.csv: not found"):
        build(str(folder))
    (folder / "valid.csv").write_text("Path,Sex\nx,y\n")
    with pytest.raises(DataError, match=r"valid\.csv: no column 'Age'"):
        build(str(folder))
    text = (folder / "train.csv").read_text().replace(",-1.0,", ",maybe,", 1)
    (folder / "train.csv").write_text(text)
    with pytest.raises(DataError, match=r"train\.csv: line 2, column .* is 'maybe'"):
        build(str(folder))


def test_a_root_without_images_fails_at_construction_naming_the_first_image(tmp_path):
    folder = chexpert_tree(tmp_path, _train_rows()[:2], _valid_rows()[:1], images=False)
    with pytest.raises(DataError, match=r"patient00001/study1/view1_frontal\.jpg: not found \(first image of "
                                        r"train\.csv\)"):
        build(str(folder))


def test_bad_images_fail_on_load_or_are_skipped_and_counted(tmp_path):
    folder = chexpert_tree(tmp_path, _train_rows()[:4], _valid_rows()[:1])
    write_image(tmp_path / _train_rows()[2]["Path"], "truncated")
    (tmp_path / _train_rows()[3]["Path"]).unlink()
    dataset = build(str(folder))
    with pytest.raises(DataError, match=r"patient00002/study1/view1_frontal\.jpg: unreadable or truncated"):
        dataset.split("train").image(2)
    skipped = build(str(folder), skip_bad_images=True)
    assert len(skipped.split("train")) == 2 and skipped.info["skipped_images"] == 2


def test_sex_age_view_and_projection_are_per_image_metadata(module_tmp):
    rows = [{**chexpert_row(1, projection="PA"), "Sex": "Male", "Age": "35"},
            {**chexpert_row(1, view=2, frontal=False), "Sex": "Male", "Age": "35"},
            {**chexpert_row(2), "Sex": "Female", "Age": "72"},
            {**chexpert_row(3), "Sex": "Unknown", "Age": ""}]
    folder = chexpert_tree(module_tmp("chexpert_meta"), rows, _valid_rows())
    dataset = build(str(folder), age_bins="50")
    train = dataset.split("train")
    assert train.metadata["sex"].tolist() == ["Male", "Male", "Female", "Unknown"]
    assert train.metadata["age"].tolist() == ["<50", "<50", ">=50", "unknown"]
    assert train.metadata["view"].tolist() == ["Frontal", "Lateral", "Frontal", "Frontal"]
    assert train.metadata["projection"].tolist() == ["PA", "unknown", "AP", "AP"]  # lateral rows have no AP/PA
    assert dataset.split("test").metadata["view"].tolist() == ["Frontal", "Frontal", "Lateral"]
    assert train.subset([2]).metadata["age"].tolist() == [">=50"]
    with pytest.raises(DataError, match="age_bins"):
        build(str(folder), age_bins="old")
