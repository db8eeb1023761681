"""Temperature scaling of a finished run, fitted on its validation split (never on test), stored as
``RUN/calibration.json`` and read back by evaluate and predict."""

from __future__ import annotations

from pathlib import Path

from txkit import rundir, storage
from txkit.rundir import RunDir
from txkit.errors import TxkitError
from txkit.data.splits import run_splits
from txkit.run.predict import predict_split
from txkit.stats import calibration_summary, fit_temperature
from txkit.training.engine import load_dataset

ECE_BINS = 15


def calibrate_run(run_dir: str | Path, batch_size: int = 64, *, device: str = "auto") -> dict:
    """Fit temperature scaling on the validation split and store it as RUN/calibration.json."""
    run = Path(run_dir)
    cfg = rundir.load_run_config(run)[0]
    dataset = load_dataset(cfg)
    if len(run_splits(dataset, cfg).get("val", ())) == 0:  # a run of one fold: its fold's validation slice
        raise TxkitError(f"{run}: the run's dataset ({dataset.name}) has no validation images; temperature "
                         f"scaling is fitted on the val split (never on test): give the dataset a val split")
    predicted = predict_split(run, "val", batch_size, dataset=dataset, device=device, own_dataset=True)
    y_true, logits, task = predicted["y_true"], predicted["logits"], predicted["task"]
    temperature = fit_temperature(logits, y_true, task)
    before = calibration_summary(y_true, logits, task, ECE_BINS)
    after = calibration_summary(y_true, logits, task, ECE_BINS, temperature=temperature)
    if not after["nll"] <= before["nll"]:  # the bounded search stopped a hair off T = 1: never make it worse
        temperature, after = 1.0, before
    record = {"method": "temperature", "temperature": temperature, "fitted_on": "val", "n": int(len(y_true)),
              "nll_before": before["nll"], "nll_after": after["nll"], "ece_before": before["ece"],
              "ece_after": after["ece"], "ece_bins": ECE_BINS}
    storage.write_json(run / RunDir.CALIBRATION, record)
    return {**record, "path": str(run / RunDir.CALIBRATION)}
