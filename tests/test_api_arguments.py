"""The Python API checks its arguments where they arrive: a wrong one is one line (a TxkitError) naming the
argument and what it takes, never an AttributeError or TypeError from deep inside; and `image_size` is refused
where its input batch alone could not fit in memory, in the API, the CLI and experiment files alike."""

import json
from pathlib import Path

import pytest
from helpers import run_txkit

import txkit
from txkit.config import ConfigError, TrainConfig
from txkit.errors import TxkitError
from txkit.experiments.spec import Checker, ExperimentFileError


@pytest.fixture
def run(tmp_path):
    """A run directory that opens (config.json only): every check below comes before anything is loaded."""
    folder = tmp_path / "run"
    folder.mkdir()
    resolved = {"num_classes": 2, "classes": ["a", "b"], "task": "multiclass", "image_size": 32}
    (folder / "config.json").write_text(json.dumps({"config": {}, "resolved": resolved}))
    return txkit.Run(folder)


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, TxkitError)
    return message


# --- txkit.train, txkit.resume, txkit.Run ------------------------------------------------------------------
def test_train_with_a_positional_path_suggests_out():
    with pytest.raises(ConfigError) as error:
        txkit.train("runs/x")
    assert one_line(error) == ("txkit.train got 'runs/x' as its first argument: pass a TrainConfig or keyword "
                               "fields; did you mean txkit.train(out='runs/x')?")
    with pytest.raises(ConfigError, match=r"did you mean txkit\.train\(out='runs/y'\)"):
        txkit.train(Path("runs/y"))


@pytest.mark.parametrize("first, words", [
    (3, "got int 3 as its first argument: pass a TrainConfig or keyword fields"),
    ({"epochs": 1}, ("got a dict as its first argument: pass a TrainConfig or keyword fields, e.g. "
                     "txkit.train(**fields)")),
])
def test_train_names_what_its_first_argument_must_be(first, words):
    with pytest.raises(ConfigError) as error:
        txkit.train(first)
    assert words in one_line(error)


def test_train_refuses_a_config_with_fields_and_a_bad_out_or_progress():
    with pytest.raises(ConfigError) as error:
        txkit.train(TrainConfig(), epochs=2)
    assert "not both: use txkit.train(config.replace(epochs=...))" in one_line(error)
    with pytest.raises(TxkitError) as error:
        txkit.train(out=3)
    assert one_line(error) == "`out` must be a run directory (a str or Path) or None, got int 3"
    with pytest.raises(TxkitError, match=r"^`progress` must be True or False, got str 'yes'$"):
        txkit.train(progress="yes")


def test_resume_and_run_need_a_run_directory_path():
    with pytest.raises(TxkitError) as error:
        txkit.resume(None)
    assert one_line(error) == "`path` must be a run directory (a str or Path), got NoneType None"
    for value in (123, None, ""):
        with pytest.raises(TxkitError, match=r"^`path` must be a run directory \(a str or Path\), got "):
            txkit.Run(value)


# --- Run.evaluate, Run.predict, Run.visualize, Run.export ----------------------------------------------------
@pytest.mark.parametrize("kwargs, words", [
    ({"split": 1}, "`split` must be a split name such as 'test', 'val' or 'train', got int 1"),
    ({"bootstrap": "many"}, ("`bootstrap` must be a whole number >= 0 of resamples (0: no intervals), e.g. 1000, "
                             "got str 'many'")),
    ({"bootstrap": True}, "`bootstrap` must be a whole number >= 0"),
    ({"bootstrap": 2.5}, "`bootstrap` must be a whole number >= 0"),
    ({"bootstrap": -1}, "`bootstrap` -1: must be 0 (no intervals) or a number of resamples, e.g. `bootstrap` 1000"),
    ({"ci_level": "high"}, "`ci_level` must be a number strictly between 0 and 1, e.g. 0.95, got str 'high'"),
    ({"ci_level": float("nan")}, "`ci_level` must be a number strictly between 0 and 1"),
    ({"ci_level": 1.5}, "`ci_level` 1.5: must lie strictly between 0 and 1, e.g. `ci_level` 0.95"),
    ({"device": "gpu"}, "`device` must be auto, cpu or cuda (or cuda:N), got str 'gpu'"),
    ({"device": None}, "`device` must be auto, cpu or cuda (or cuda:N), got NoneType None"),
    ({"dataset": ""}, "`dataset` must be a registered dataset name such as 'csv'"),
    ({"dataset": 3}, "`dataset` must be a registered dataset name such as 'csv' (txkit.list_entries('datasets')) "
                     "or None, got int 3"),
    ({"dataset": "csv", "data_root": 5}, "`data_root` must be the external dataset's folder or file (a str or Path)"),
    ({"data_options": "subgroups=sex"}, "`data_options` must be a dict of option names to values"),
    ({"class_map": ["a=b"]}, "`class_map` must be 'EXTERNAL=RUN,...' or a dict {external class: run class}"),
    ({"by": 3}, "`by` must be a metadata column name such as 'sex' or a list of them, got int 3"),
    ({"by": ["sex", None]}, "`by` must be a metadata column name such as 'sex' or a list of them"),
    ({"threshold": True}, "`threshold` must be 'youden', 'f1', 'sensitivity=0.9', 'specificity=0.95' or a "
                          "probability such as 0.5, got bool True"),
    ({"threshold": "sensitivity=1.5"}, "`threshold` sensitivity=1.5: the target sensitivity must lie strictly "
                                       "between 0 and 1, e.g. sensitivity=0.9"),
    ({"threshold": "youdn"}, "`threshold` youdn: not a threshold rule"),
    ({"data_root": "x.csv"}, "`data_root` is for an external dataset: give `dataset` NAME too"),
])
def test_evaluate_names_the_bad_argument(run, kwargs, words):
    with pytest.raises(TxkitError) as error:
        run.evaluate(**kwargs)
    assert words in one_line(error)


@pytest.mark.parametrize("images, words", [
    (None, "`images` must be an image file path or a list of them, e.g. ['a.png', 'b.dcm'], got NoneType None"),
    (123, "`images` must be an image file path or a list of them, e.g. ['a.png', 'b.dcm'], got int 123"),
    (b"a.png", "`images` must be an image file path or a list of them"),
    (["a.png", 7], "`images`[1] must be an image file path (a str or Path), got int 7"),
    ([""], "`images`[0] must be an image file path (a str or Path), got str ''"),
])
def test_predict_takes_a_path_or_a_list_of_paths(run, images, words):
    with pytest.raises(TxkitError) as error:
        run.predict(images)
    assert words in one_line(error)


def test_predict_names_a_bad_threshold(run):
    with pytest.raises(TxkitError, match=r"^`threshold` must be 'youden', 'f1'.*got list \['f1'\]$"):
        run.predict("a.png", threshold=["f1"])
    with pytest.raises(TxkitError, match=r"^`threshold` specificity=0: the target specificity must lie strictly"):
        run.predict("a.png", threshold="specificity=0")


def test_predict_names_a_bad_device(run):
    with pytest.raises(TxkitError, match=r"^`device` must be auto, cpu or cuda \(or cuda:N\), got int 0$"):
        run.predict("a.png", device=0)


def test_visualize_names_a_bad_method_images_or_keyword(run):
    with pytest.raises(TxkitError) as error:
        run.visualize(None, ["a.png"])
    assert one_line(error).startswith("`method` must be a visualizer name (txkit.list_entries('visualizers')) or "
                                      "a Visualizer, got NoneType None")
    with pytest.raises(TxkitError, match=r"^`images` must be an image file path or a list of them"):
        run.visualize("saliency", 123)
    with pytest.raises(TxkitError) as error:
        run.visualize("saliency", ["a.png"], colour="red")
    assert one_line(error).startswith("Run.visualize takes no argument 'colour'; use layer, target, channel, out, "
                                      "threshold, image_size, options")


def test_export_names_a_bad_format(run):
    with pytest.raises(TxkitError, match=r"^`format` must be onnx or torchscript, got 'gif'$"):
        run.export("gif")


def test_the_runtime_names_a_device_torch_does_not_know():
    from txkit.training.runtime import resolve_device

    with pytest.raises(TxkitError, match=r"^`device` must be auto, cpu or cuda \(or cuda:N\), got 'gpu'$"):
        resolve_device("gpu")


# --- experiments ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, words", [
    ({"path": None}, "`path` must be an experiment file (a str or Path), got NoneType None"),
    ({"path": "x.toml", "out": 5}, "`out` must be an experiment directory (a str or Path) or None, got int 5"),
    ({"path": "x.toml", "jobs": 0}, "`jobs` must be a whole number >= 1 (runs at once), got int 0"),
    ({"path": "x.toml", "jobs": "2"}, "`jobs` must be a whole number >= 1 (runs at once), got str '2'"),
    ({"path": "x.toml", "overrides": ["defaults.epochs=3"]},
     "`overrides` must be a dict of 'table.field': value, e.g. {'defaults.epochs': '3'} (what --set gives)"),
    ({"path": "x.toml", "overrides": {"defaults.epochs": None}}, "`overrides` must map 'table.field' names to values"),
])
def test_run_experiment_names_the_bad_argument(kwargs, words, tmp_path):
    path = kwargs.pop("path")
    with pytest.raises(TxkitError) as error:
        txkit.run_experiment(path, **kwargs)
    assert words in one_line(error)
    assert not (tmp_path / "experiments").exists()


def test_report_experiment_needs_a_directory_path():
    with pytest.raises(TxkitError) as error:
        txkit.report_experiment(5)
    assert one_line(error) == "`directory` must be an experiment directory (a str or Path), got int 5"


# --- image_size -----------------------------------------------------------------------------------------------
def test_an_image_size_over_the_cap_names_the_field_and_the_memory():
    with pytest.raises(ConfigError) as error:
        txkit.train(image_size=60000)
    assert one_line(error) == ("`image_size` must be at most 4096 px: a batch of 32 at 60000 x 60000 px needs "
                               "1.26 TiB for its input alone (`batch_size` x 3 x S x S x 4 bytes); use e.g. 224 or "
                               "512 (got 60000)")
    assert TrainConfig.create(image_size=4096).image_size == 4096


def test_an_input_batch_over_8_gib_names_both_fields():
    with pytest.raises(ConfigError) as error:
        TrainConfig.create(image_size=2048, batch_size=1024)
    assert one_line(error).startswith("`image_size` and `batch_size` are too large together: a batch of 1024 at "
                                      "2048 x 2048 px needs 48 GiB for its input alone")
    assert "use a smaller `image_size` or `batch_size`" in str(error.value)
    with pytest.raises(ConfigError, match=r"needs 192 GiB"):
        TrainConfig.create(image_size=2048, batch_size=16).replace(batch_size=4096)
    assert TrainConfig.create(image_size=2048, batch_size=64).batch_size == 64  # 3 GiB of input: allowed


def test_the_cli_and_experiment_files_word_the_image_size_cap_their_way(tmp_path):
    result = run_txkit("train", "--image-size", "60000", "--out", str(tmp_path / "run"))
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: --image-size must be at most 4096 px: a batch of 32 at 60000 x 60000 px "
                               "needs 1.26 TiB for its input alone (--batch-size x 3 x S x S x 4 bytes)")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ExperimentFileError) as error:
        Checker(tmp_path / "x.toml").config("[defaults]", {"image_size": 60000})
    assert "x.toml: [defaults]: image_size must be at most 4096 px" in str(error.value)
    assert "`" not in str(error.value)
