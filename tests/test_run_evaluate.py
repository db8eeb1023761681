"""A finished run used by evaluate/predict: the intensity rule it recorded at training time is the one applied,
whatever its training folder holds today, and evaluation runs on the inference runtime (loader workers too)."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config
from txkit.datasets.intensity import IntensityRule
from txkit.run.evaluate import evaluate_run
from txkit.run.load import open_run
from txkit.run.predict import predict_split
from txkit.training import session


def write_16_bit_folder(root, per_class=6, seed=0):
    """train/val/test of two classes of 16-bit PNGs: class b is brighter than class a."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        for label, base in (("a", 8000), ("b", 20000)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = rng.normal(base, 3000, (32, 32)).clip(0, 65535).astype(np.uint16)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def percentile_run(module_tmp):
    data = write_16_bit_folder(module_tmp("data16"))
    cfg = tiny_config(dataset="imagefolder", data_root=str(data), data_options={}, intensity="percentile:1:99",
                      epochs=1, image_size=32)
    run_dir, summary = session.train(cfg, module_tmp("run") / "run")
    return data, run_dir, summary


def test_evaluate_after_the_training_folder_changed_gives_the_metrics_recorded_at_training_time(percentile_run):
    data, run_dir, summary = percentile_run
    recorded = json.loads((run_dir / "config.json").read_text())["resolved"]["intensity"]["bounds"]
    before = predict_split(run_dir, "test")["logits"]
    # new, much brighter training images: a rule fitted again on today's folder has other percentile bounds
    for i in range(12):
        Image.fromarray(np.full((32, 32), 65000, np.uint16)).save(data / "train" / "a" / f"new{i}.png")
    refit = IntensityRule.parse("percentile:1:99").fit(_train_split(run_dir))
    assert list(refit.bounds) != recorded  # the folder change really moves the bounds
    after = evaluate_run(run_dir, "test", bootstrap=0)
    np.testing.assert_array_equal(predict_split(run_dir, "test")["logits"], before)
    for metric in ("accuracy", "auc", "f1"):
        assert after[metric] == pytest.approx(summary["test"][metric], abs=1e-12)


def test_evaluation_with_loader_workers_gives_the_same_logits(percentile_run):
    _, run_dir, _ = percentile_run
    in_process = predict_split(run_dir, "test", num_workers=0)["logits"]
    with_workers = predict_split(run_dir, "test", num_workers=2)["logits"]
    np.testing.assert_array_equal(in_process, with_workers)


def _train_split(run_dir):
    from txkit.training.engine import load_dataset

    return load_dataset(open_run(run_dir).cfg).split("train")
