"""Silently wrong data is refused in one line or mapped by a documented rule (docs/training.md, "Pixels and
labels"): float and 16-bit pixels, short label arrays, stray integer labels, duplicate rows, one image in two
splits, and error messages that give only advice the command can take."""

import numpy as np
import pytest
from faults import assert_one_line_error, tree_hashes
from helpers import image_folders, make_distribution, pythonpath, run_txkit
from PIL import Image

from txkit.datasets.base import Split, TxDataset, load_gray, to_gray_uint8
from txkit.errors import DataError
from txkit.plugins import create

TRAIN = ("--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--epochs", "1", "--device", "cpu")


def train(dataset, root, out, *extra, env=None):
    return run_txkit("train", "--dataset", dataset, "--data-root", str(root), *TRAIN, "--out", str(out), *extra,
                     env=env)


def data_info(dataset, root, *extra):
    return run_txkit("data", "info", dataset, "--data-root", str(root), "--sample", "0", *extra)


def write_png(path, value=100, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)


def write_csv(tmp_path, rows, header="path,label"):
    """Images img/0.png ... for every row whose path is not given; returns the CSV path."""
    for path, *_ in rows:
        if not (tmp_path / path).exists() and path:
            write_png(tmp_path / path, 40 + 10 * len(path))
    table = tmp_path / "labels.csv"
    table.write_text("\n".join([header, *(",".join(map(str, row)) for row in rows)]) + "\n")
    return table


def binary_rows(n=6):
    return [(f"img/{c}_{i}.png", c) for c in (0, 1) for i in range(n)]


def medmnist_npz(path, images=None, labels=None, **overrides):
    """A small MedMNIST-like file: 6 train, 4 val, 4 test 28x28 images, labels 0/1."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else \
            images[:n]
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1) if labels is None else labels[:n]
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------ medmnist pixels

def test_medmnist_float_images_in_0_1_are_scaled_by_255_and_train(tmp_path):
    pixels = np.linspace(0, 1, 6 * 28 * 28, dtype=np.float32).reshape(6, 28, 28)
    npz = medmnist_npz(tmp_path / "floats.npz", images=pixels)
    first = create("dataset", "medmnist", root=str(npz)).split("train").image(0)
    assert first.dtype == np.uint8 and np.array_equal(first, np.rint(pixels[0] * 255).astype(np.uint8))
    assert first.max() > 0  # the old astype(uint8) made every image black
    result = train("medmnist", npz, tmp_path / "run")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("value, problem", [(2.5, "float images must lie in [0, 1]"),
                                            (-0.1, "negative pixel values"),
                                            (np.nan, "NaN or infinite")])
def test_medmnist_float_images_out_of_range_are_refused(tmp_path, value, problem):
    pixels = np.full((6, 28, 28), 0.5, dtype=np.float32)
    pixels[3, 2, 2] = value
    npz = medmnist_npz(tmp_path / "bad.npz", images=pixels)
    assert_one_line_error(data_info("medmnist", npz), "bad.npz", "train_images", problem, exit_code=1)


def test_medmnist_uint16_images_keep_the_bit_depth_rule(tmp_path):
    pixels = np.full((6, 28, 28), 1000, dtype=np.uint16)
    pixels[1] = 60000
    split = create("dataset", "medmnist", root=str(medmnist_npz(tmp_path / "deep.npz", images=pixels))).split("train")
    assert split.image(0).max() == round(1000 / 65535 * 255) == 4
    assert split.image(1).min() == round(60000 / 65535 * 255) == 233


def test_medmnist_wide_integer_images_beyond_8_bit_are_refused(tmp_path):
    pixels = np.full((6, 28, 28), 300, dtype=np.int64)
    npz = medmnist_npz(tmp_path / "wide.npz", images=pixels)
    assert_one_line_error(data_info("medmnist", npz), "wide.npz", "int64 images must hold 8-bit values")


def test_medmnist_fewer_labels_than_images_is_refused(tmp_path):
    npz = medmnist_npz(tmp_path / "short.npz", train_labels=np.zeros((5, 1), dtype=np.uint8))
    assert_one_line_error(train("medmnist", npz, tmp_path / "run"), "short.npz", "train_images holds 6 images",
                          "train_labels 5 labels", exit_code=1)


def test_medmnist_label_outside_the_known_classes_is_refused(tmp_path):
    labels = np.array([0, 1, 0, 7, 1, 0]).reshape(-1, 1)
    npz = medmnist_npz(tmp_path / "pneumoniamnist.npz", labels=labels)
    assert_one_line_error(data_info("medmnist", npz), "pneumoniamnist.npz", "train_labels[3] is 7",
                          "normal, pneumonia")


def test_medmnist_label_gap_is_refused(tmp_path):
    labels = np.array([0, 1, 0, 5, 1, 0]).reshape(-1, 1)
    npz = medmnist_npz(tmp_path / "mystery.npz", labels=labels)
    assert_one_line_error(data_info("medmnist", npz), "mystery.npz", "train_labels[3] is 5", "no image has label 2")


# ------------------------------------------------------------------------------------------ csv labels and rows

def test_csv_stray_integer_label_is_refused_with_the_row(tmp_path):
    table = write_csv(tmp_path, [*binary_rows(), ("img/odd.png", 7)])
    line = assert_one_line_error(train("csv", table, tmp_path / "run"), "labels.csv", "row 14 has label 7",
                                 "--data-option classes=", exit_code=1)
    assert "no row has label 2" in line


def test_csv_stray_label_is_accepted_when_classes_are_listed(tmp_path):
    table = write_csv(tmp_path, [*binary_rows(), ("img/odd.png", 7)])
    dataset = create("dataset", "csv", root=str(table), classes="0,1,2,3,4,5,6,7")
    labels = np.concatenate([split.labels for split in dataset.splits.values()])
    assert dataset.classes == [str(k) for k in range(8)] and sorted(set(labels.tolist())) == [0, 1, 7]


def test_csv_negative_integer_label_is_refused(tmp_path):
    table = write_csv(tmp_path, [*binary_rows(), ("img/odd.png", -1)])
    assert_one_line_error(data_info("csv", table), "labels.csv", "row 14 has label -1")


def test_csv_duplicate_path_is_refused_with_both_rows(tmp_path):
    rows = binary_rows()
    rows.append(("./" + rows[2][0], rows[2][1]))  # the same file, written differently
    table = write_csv(tmp_path, rows)
    assert_one_line_error(train("csv", table, tmp_path / "run"), "labels.csv", "rows 4 and 14", rows[-1][0],
                          "remove one of the rows", exit_code=1)


def test_csv_short_row_is_refused_with_the_row(tmp_path):
    table = write_csv(tmp_path, binary_rows(), header="path,label,split")
    assert_one_line_error(data_info("csv", table), "labels.csv", "row 2 has fewer cells than the header")


def test_csv_unknown_split_value_names_the_row(tmp_path):
    rows = [(path, label, "train" if i % 3 else "test") for i, (path, label) in enumerate(binary_rows())]
    rows[4] = (rows[4][0], rows[4][1], "holdout")
    table = write_csv(tmp_path, rows, header="path,label,split")
    assert_one_line_error(data_info("csv", table), "labels.csv", "row 6", "'holdout'", "train, val or test")


def test_csv_group_in_two_splits_names_the_group_without_a_repr(tmp_path):
    rows = [(path, label, "train", f"P{i}") for i, (path, label) in enumerate(binary_rows())]
    rows[0] = (rows[0][0], rows[0][1], "test", "P42")
    rows[1] = (rows[1][0], rows[1][1], "train", "P42")
    table = write_csv(tmp_path, rows, header="path,label,split,group")
    assert_one_line_error(data_info("csv", table), "labels.csv", "group P42 appears in test and train")


def test_csv_missing_image_advises_the_path_column(tmp_path):
    table = write_csv(tmp_path, binary_rows())
    (tmp_path / "img" / "0_3.png").unlink()
    line = assert_one_line_error(train("csv", table, tmp_path / "run"), "0_3.png", "image file not found",
                                 "check the path column or image_root", exit_code=1)
    assert "data root" not in line


# ------------------------------------------------------------------------------------------ one image, one split

def _split(ids):
    return Split(lambda i: np.zeros((4, 4), np.uint8), np.zeros(len(ids), dtype=np.int64), ids=ids)


def test_check_splits_refuses_an_id_in_two_splits_and_allows_a_reused_split():
    shared = TxDataset("toy", ["a"], {"train": _split(["a.png", "b.png"]), "test": _split(["c.png", "b.png"])})
    with pytest.raises(DataError, match=r"^b\.png: in both the train and test splits of toy"):
        shared.check_splits()
    reused = TxDataset("toy", ["a"], {"train": _split(["a.png"]), "val": _split(["b.png"]), "test": _split(["b.png"])})
    reused.check_splits()  # CheXpert's thesis protocol: val and test are one list
    unnamed = {name: Split(lambda i: None, np.zeros(3, dtype=np.int64)) for name in ("train", "test")}
    TxDataset("toy", ["a"], unnamed).check_splits()  # default ids are row numbers, not images
    subset = _split(["a.png", "b.png"]).subset([1])
    assert subset.named and subset.ids == ["b.png"]


LEAKY_PLUGIN = """
    import numpy as np
    from txkit import hookimpl
    from txkit.datasets.base import Split, TxDataset

    def build(root=None, **options):
        ids = {"train": [f"img{i}.png" for i in range(8)], "val": ["v0.png", "v1.png"], "test": ["t0.png", "img5.png"]}
        splits = {name: Split(lambda i: np.full((8, 8), 99, np.uint8), np.arange(len(names)) % 2, ids=names)
                  for name, names in ids.items()}
        return TxDataset("leaky", ["a", "b"], splits)

    @hookimpl
    def register_datasets(register):
        register("leaky", "txkit_leaky:build", "an image in train and test")
"""


def test_train_refuses_a_plugin_dataset_with_one_image_in_two_splits(tmp_path, site):
    make_distribution(site, "txkit-leaky", "txkit_leaky", LEAKY_PLUGIN)
    result = run_txkit("train", "--dataset", "leaky", *TRAIN, "--out", str(tmp_path / "run"), env=pythonpath(site))
    assert_one_line_error(result, "img5.png", "in both the train and test splits of leaky", exit_code=1)


# ------------------------------------------------------------------------------------------ image files

def _write_16bit(path, value):
    Image.fromarray(np.full((16, 16), value, dtype=np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16")


def test_16bit_pngs_keep_their_value_order_across_images(tmp_path):
    for name, value in (("dark", 3000), ("bright", 50000)):
        (tmp_path / "data" / name).mkdir(parents=True)
        _write_16bit(tmp_path / "data" / name / "0.png", value)
    dark, bright = load_gray(tmp_path / "data" / "dark" / "0.png"), load_gray(tmp_path / "data" / "bright" / "0.png")
    assert dark.max() == round(3000 / 65535 * 255) == 12  # per-image min-max made both black
    assert bright.min() == round(50000 / 65535 * 255) == 195
    dataset = create("dataset", "imagefolder", root=str(tmp_path / "data"), val_fraction=0, test_fraction=0)
    train_split = dataset.split("train")
    by_class = {dataset.classes[int(label)]: train_split.image(i) for i, label in enumerate(train_split.labels)}
    assert by_class["dark"].mean() < by_class["bright"].mean()


def test_32bit_and_float_images_follow_the_bit_depth_rule():
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert to_gray_uint8(sixteen).tolist() == [[0, 255]]
    wide = Image.fromarray(np.array([[0, 2**31 - 1]], dtype=np.int32))
    assert to_gray_uint8(wide).tolist() == [[0, 255]]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert to_gray_uint8(unit).tolist() == [[0, 128, 255]]
    with pytest.raises(DataError, match=r"^scan\.tif: pixel values up to 4095, but float images must lie in \[0, 1\]"):
        to_gray_uint8(Image.fromarray(np.array([[0.0, 4095.0]], dtype=np.float32)), "scan.tif")


def test_float_tiff_out_of_range_stops_training_in_one_line(tmp_path):
    rows = binary_rows(4)
    table = write_csv(tmp_path, rows)
    for path, _ in rows:
        Image.fromarray(np.full((8, 8), 300.0, dtype=np.float32)).save(tmp_path / path, format="TIFF")
    assert_one_line_error(train("csv", table, tmp_path / "run"), "float images must lie in [0, 1]", exit_code=1)


def test_load_gray_message_is_neutral_about_the_caller(tmp_path):
    with pytest.raises(DataError) as missing:
        load_gray(tmp_path / "gone.png")
    assert str(missing.value) == f"{tmp_path / 'gone.png'}: image file not found"
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataError) as junk:
        load_gray(tmp_path / "junk.png")
    assert "unreadable or truncated image" in str(junk.value) and "skip_bad_images" not in str(junk.value)


def test_predict_missing_image_is_one_line_without_dataset_advice(tmp_path):
    table = write_csv(tmp_path, binary_rows(4))
    run = tmp_path / "run"
    assert train("csv", table, run).returncode == 0
    before = tree_hashes(run)
    result = run_txkit("predict", str(run), str(tmp_path / "nowhere.png"))
    line = assert_one_line_error(result, "nowhere.png: image file not found; check the path", exit_code=1)
    assert "--skip-bad-images" not in line and "path column" not in line and "data root" not in line
    assert tree_hashes(run) == before


# ------------------------------------------------------------ unreadable images, found before the first epoch

def test_an_unreadable_image_only_in_the_test_split_stops_the_run_before_the_first_epoch(tmp_path):
    root = image_folders(tmp_path / "data", bad="test/a/1.png")
    result = train("imagefolder", root, tmp_path / "run", "--batch-size", "8",
                   env={"TXKIT_CACHE_DIR": str(tmp_path / "cache")})
    assert_one_line_error(result, root / "test/a/1.png", "--skip-bad-images")
    assert not (tmp_path / "run").exists()  # no epoch trained, nothing written
    assert not (tmp_path / "cache").exists()  # not even the training images were decoded


def test_check_images_opens_every_split_and_skips_with_skip_bad_images(tmp_path):
    from txkit.datasets.files import check_images, file_split

    root = image_folders(tmp_path, per_split=(("train", 2), ("test", 2)))
    truncated = root / "test/b/0.png"
    truncated.write_bytes(truncated.read_bytes()[:60])  # a valid header, its image data cut short

    def dataset():
        test = file_split(sorted((root / "test").rglob("*.png")), [0, 0, 1, 1])
        train = file_split(sorted((root / "train").rglob("*.png")), [0, 0, 1, 1])
        return TxDataset("folders", ["a", "b"], {"train": train, "val": test, "test": test})

    with pytest.raises(DataError, match=rf"{truncated}: unreadable or truncated image.*`skip_bad_images`"):
        check_images(dataset())
    skipping = dataset()
    assert check_images(skipping, skip=True) == 1  # val and test are one split: checked and counted once
    assert skipping.info["skipped_images"] == 1 and str(truncated) not in skipping.splits["test"].ids
    assert len(skipping.splits["test"]) == 3 and skipping.splits["val"] is skipping.splits["test"]
    assert len(skipping.splits["train"]) == 4


def test_check_images_keeps_a_file_that_only_the_header_check_mistrusts(tmp_path, monkeypatch):
    from txkit.datasets import files

    root = image_folders(tmp_path, per_split=(("train", 2),))
    split = files.file_split(sorted(root.rglob("*.png")), [0, 0, 1, 1])
    monkeypatch.setattr(files, "opens", lambda path: False)  # every header "fails": each file is read in full
    assert files.check_images(TxDataset("folders", ["a", "b"], {"train": split})) == 0
