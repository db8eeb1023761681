"""Export a finished run's network as ONNX or TorchScript, with its input contract, verified against PyTorch.

The exported model is the whole :class:`txkit.network.TxNet` with the run's best weights: it takes a
(N, 1, S, S) float32 batch of grayscale images (S the run's image size, N free) and returns (N, classes) logits.
The pixels are what the run's intensity rule gives, resized to S x S: for 8-bit images the uint8 grey resized
(PIL bicubic) and divided by 255 (:func:`txkit.training.runtime.to_input`, :func:`txkit.datasets.pixels.as_float`),
for the other rules the rule's float32 values in [0, 1] (``hu``: Hounsfield units). The normalisation the
backbone's weights expect, the gray-to-RGB step or the colorizer are inside the model, as in TxNet.

That contract (image size, channels, value range, the intensity rule's record, classes, task, txkit version)
travels inside the file (ONNX ``metadata_props`` key ``txkit``; TorchScript extra file ``txkit.json``) and in a
JSON sidecar ``<file name>.json`` beside it, which also holds the verification and the file's sha256.

Nothing is written before the exported bytes have been verified: a model that does not reproduce the PyTorch
logits within the tolerance is an error, and the model and its sidecar are each replaced atomically.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from txkit import __version__, storage
from txkit.datasets.intensity import run_rule
from txkit.errors import TxkitError
from txkit.data.loader import TensorSplit, cache_settings, make_loader
from txkit.rundir import RunDir, load_calibration
from txkit.run.load import load_run
from txkit.training.engine import load_dataset
from txkit.training.session import FINISHED

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}  # the default file name of each format
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".torchscript")}
EXPORT_DIR = "export"
SCHEMA = "txkit-export-1"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
METADATA_KEY = "txkit"  # ONNX metadata_props key holding the contract (JSON)
EXTRA_FILE = "txkit.json"  # TorchScript extra file holding the contract (JSON)
INSTALL = "pip install 'txkit[export]'"

# Exported and PyTorch logits may differ by rounding only. Both compute in float32 (eps 1.2e-7), but with other
# kernels and orders of summation (onnxruntime folds batch norm into the convolutions and fuses operators;
# TorchScript runs the same ATen kernels), so the differences grow with depth: 1e-9 to 2e-6 on logits of
# magnitude 1-10 for resnet18, densenet121, efficientnet_lite0, timm convnext and the colorizers (torch 2.14,
# onnxruntime 1.32, CPU). 1e-4 absolute leaves a margin of 50x or more, while the faults verification is there
# to catch (dropout or batch norm left in training mode, a batch size baked into the graph, a lost weight, the
# wrong normalisation) move logits by 1e-2 and more. `tolerance` loosens it for unusually deep models.
TOLERANCE = 1e-4
VERIFY_IMAGES = 256  # test images compared at most (the first ones of the test split)
RANDOM_INPUTS, RANDOM_SEED = 8, 0  # the fallback inputs when the run's dataset cannot be loaded
VERIFY_BATCH = 32


class ExportError(TxkitError):
    """A model that cannot be exported, or whose export does not reproduce the PyTorch logits."""


# ------------------------------------------------------------------------------------------ checking

def check_export_options(format, out, verify, tolerance=TOLERANCE, max_images=VERIFY_IMAGES) -> str:
    """The format's canonical name; a wrong type or value is a TxkitError naming the argument in backticks."""
    names = " or ".join(FORMATS)
    if not isinstance(format, str) or format.strip().lower() not in FORMATS:
        raise TxkitError(f"`format` must be {names}, got {format!r}")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TxkitError(f"`out` must be a file path (str or Path) or None, got {type(out).__name__} {out!r}")
    if isinstance(out, str) and not out.strip():
        raise TxkitError("`out` must be a file path, got an empty string")
    if not isinstance(verify, bool):
        raise TxkitError(f"`verify` must be True or False, got {verify!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise TxkitError(f"`tolerance` must be a finite number >= 0, e.g. {TOLERANCE:g}, got {tolerance!r}")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise TxkitError(f"`max_images` must be a whole number >= 1, got {max_images!r}")
    return format.strip().lower()


def finished_run(run_dir) -> tuple[RunDir, dict]:
    """The run and its config.json; one line when the folder is not a run or the run has not finished."""
    run = RunDir(run_dir)
    meta = run.config_json()
    status = run.status()
    if status not in FINISHED:
        state = f"its status is {status}" if status else "it has no summary.json yet"
        fix = ("train a new run" if status == "non-finite-loss" else
               f"finish it with txkit train --resume {run.path}, then export it")
        raise ExportError(f"{run.path}: the run has not finished ({state}); export needs a completed or "
                          f"early-stopped run: {fix}")
    return run, meta


def output_path(run: RunDir, format: str, out) -> Path:
    """``out`` (a folder, or a path ending in /, gets the default file name), else RUN/export/model.onnx or
    model.pt. Checked, not created: nothing is made before the export has been verified."""
    if out is None:
        path = run.path / EXPORT_DIR / FORMATS[format]
    else:
        path = Path(out).expanduser()
        if path.is_dir() or str(out).endswith(("/", os.sep)):
            path = path / FORMATS[format]
    for other, suffixes in SUFFIXES.items():
        if other != format and path.suffix.lower() in suffixes:
            raise TxkitError(f"`out` {path}: a {path.suffix} file is {other}, but `format` is {format}; name the "
                             f"file {path.with_suffix(SUFFIXES[format][0]).name} or use `format` {other}")
    run_files = {(run.path / name).resolve() for name in (RunDir.CONFIG, RunDir.WEIGHTS, RunDir.METRICS,
                                                          RunDir.METRICS_CSV, RunDir.SUMMARY, RunDir.CHECKPOINT,
                                                          RunDir.CHECKPOINT_STATE, RunDir.CALIBRATION,
                                                          RunDir.THRESHOLDS)}
    for written in (path, sidecar_path(path)):
        if written.resolve() in run_files:
            raise TxkitError(f"`out` {path}: would overwrite the run's {written.name}; choose another `out`")
    if path.is_dir():
        raise TxkitError(f"`out` {path}: is a folder; choose a file name")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise TxkitError(f"`out` {path}: {existing} is a file, not a folder; choose another `out`")
    return path


def sidecar_path(path: Path) -> Path:
    """The contract beside the model: model.onnx -> model.onnx.json."""
    return path.with_name(path.name + ".json")


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TxkitError(f"`out` {path}: cannot create {path.parent} ({exc.strerror or exc}); choose another "
                         f"`out`") from None


def _modules(format: str, verify: bool) -> dict:
    """The optional packages the format needs, imported; one line naming the missing ones and the extra."""
    needed = {"onnx": ["onnx", "onnxscript"] + (["onnxruntime"] if verify else []), "torchscript": []}[format]
    found, missing = {}, []
    for name in needed:
        try:
            found[name] = importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          f"not installed: {INSTALL}")
    return found


# ------------------------------------------------------------------------------------------ contract

def contract(meta: dict, format: str, run: RunDir) -> dict:
    """What a consumer of the exported model needs to feed it and read its output."""
    resolved, config = meta["resolved"], meta["config"]
    size, classes, task = int(resolved["image_size"]), list(resolved["classes"]), resolved["task"]
    rule = run_rule(meta)
    calibration = load_calibration(run.path)
    summary = run.summary() or {}
    return {
        "schema": SCHEMA,
        "format": format,
        "txkit_version": __version__,
        "torch_version": torch.__version__,
        "task": task,
        "classes": classes,
        "input": {
            "name": INPUT_NAME, "shape": ["batch", 1, size, size], "dtype": "float32", "layout": "NCHW",
            "channels": 1, "color": "grayscale", "image_size": size,
            "range": None if rule.name == "hu" else [0.0, 1.0],
            "unit": "Hounsfield units (intensity rule hu)" if rule.name == "hu" else "intensity in [0, 1]",
            "preprocessing": (
                f"decode to one grey channel; apply the intensity rule {rule.text} (see intensity); resize to "
                f"{size} x {size} with PIL bicubic: 8-bit grey is resized as uint8 then divided by 255, other "
                f"rules are resized in float32 and clipped to the range the rule gave; stack as (N, 1, {size}, "
                f"{size}) float32. The backbone's normalisation is inside the model: do not normalise."),
        },
        "output": {
            "name": OUTPUT_NAME, "shape": ["batch", len(classes)], "dtype": "float32", "kind": "logits",
            "probabilities": ("softmax over the classes" if task == "multiclass"
                              else "sigmoid of each class's logit (independent labels)"),
        },
        "intensity": rule.record(),
        "calibration": None if calibration is None else {"temperature": calibration["temperature"],
                                                         "fitted_on": calibration.get("fitted_on", "val")},
        "run": {"dataset": config.get("dataset"), "backbone": config.get("backbone"),
                "colorizer": config.get("colorizer"), "gray": config.get("gray"),
                "strategy": config.get("strategy"), "weights": resolved.get("weights"),
                "status": summary.get("status"), "best_epoch": summary.get("best_epoch"),
                "monitor": summary.get("monitor"), "best_val": _finite(summary.get("best_val"))},
    }


# --------------------------------------------------------------------------------------- serializing

def serialize(net: torch.nn.Module, format: str, size: int, record: dict, modules: dict) -> bytes:
    """The exported file's bytes, with the contract inside (dynamic batch axis, fixed image size)."""
    example = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(RANDOM_SEED))
    text = json.dumps(record)
    if format == "onnx":
        return _onnx_bytes(net, example, text, modules["onnx"])
    return _torchscript_bytes(net, example, text)


def _onnx_bytes(net, example: torch.Tensor, text: str, onnx) -> bytes:
    # The torch.export-based exporter (dynamo=True, needs onnxscript): the legacy TorchScript-based one is
    # deprecated in torch 2.14 and fails on the adaptive pooling of alexnet and cxrnet at small image sizes.
    try:
        with torch.no_grad():
            program = torch.onnx.export(net, (example,), dynamo=True, verbose=False, report=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
        model = program.model_proto
    except Exception as exc:  # noqa: BLE001 - torch.export and the ONNX translation raise many kinds
        raise ExportError(f"ONNX export failed ({type(exc).__name__}: {_first_line(exc)}); try `format` "
                          f"torchscript") from None
    model.metadata_props.add(key=METADATA_KEY, value=text)
    model.doc_string = "txkit model: (N, 1, S, S) float32 grayscale in, logits out; see the metadata key txkit"
    try:
        onnx.checker.check_model(model)
        return model.SerializeToString()
    except (onnx.checker.ValidationError, ValueError) as exc:  # ValueError: over protobuf's 2 GB
        raise ExportError(f"ONNX export gave an invalid model ({_first_line(exc)}); try `format` "
                          f"torchscript") from None


def _torchscript_bytes(net, example: torch.Tensor, text: str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)  # deprecated in 2.14
        try:
            traced = torch.jit.trace(net, example, check_trace=False)  # the verification checks it instead
        except Exception as exc:  # noqa: BLE001 - tracing raises whatever the model's code raises
            raise ExportError(f"TorchScript export failed ({type(exc).__name__}: {_first_line(exc)}); try "
                              f"`format` onnx") from None
        torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: text})
    return buffer.getvalue()


def load_exported(data: bytes, format: str, modules: dict):
    """A function from a float32 (N, 1, S, S) array to the exported model's (N, classes) logits."""
    if format == "onnx":
        ort = modules["onnxruntime"]
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()
    return run


# -------------------------------------------------------------------------------------- verification

def verification_inputs(run: RunDir, meta: dict, max_images: int) -> tuple[torch.Tensor, dict, str | None]:
    """The first ``max_images`` test images as the run's loader gives them (the recorded intensity rule), and
    what they are; else RANDOM_INPUTS seeded random images in [0, 1] and a one-line warning why."""
    size = int(meta["resolved"]["image_size"])
    try:
        cfg = run.config()
        dataset = load_dataset(cfg)
        part = dataset.splits.get("test")
        if part is None or not len(part):
            raise TxkitError(f"the dataset {dataset.name} has no test images")
        rows = np.arange(min(len(part), max_images))
        data = TensorSplit(part, size, dataset.task, run_rule(meta), cache_settings(cfg), indices=rows,
                           label=f"{dataset.name} test")
        x = torch.cat([batch for batch, _ in make_loader(data, VERIFY_BATCH, shuffle=False)])
        return x.float().contiguous(), {"source": "test", "images": len(rows), "of": len(part)}, None
    except (TxkitError, OSError) as exc:
        x = torch.rand(RANDOM_INPUTS, 1, size, size, generator=torch.Generator().manual_seed(RANDOM_SEED))
        warning = (f"cannot load the run's test images ({_first_line(exc)}); verifying on {RANDOM_INPUTS} random "
                   f"images (seed {RANDOM_SEED}) instead")
        return x, {"source": "random", "images": RANDOM_INPUTS, "of": RANDOM_INPUTS}, warning


@torch.no_grad()
def compare(net: torch.nn.Module, exported, x: torch.Tensor) -> dict:
    """Max |exported - PyTorch| over the logits of ``x``: one image alone, then batches of VERIFY_BATCH, so a
    batch size baked into the exported graph shows."""
    differences, sizes = [], []
    for batch in [x[:1], *x.split(VERIFY_BATCH)]:
        expected = net(batch).numpy()
        try:
            got = np.asarray(exported(batch.numpy()))
        except Exception as exc:  # noqa: BLE001 - onnxruntime's and TorchScript's runtime errors have many kinds
            raise ExportError(f"the exported model fails on a batch of {len(batch)} image(s) ({type(exc).__name__}: "
                              f"{_first_line(exc)}); nothing was written") from None
        if got.shape != expected.shape:
            raise ExportError(f"the exported model gave logits of shape {got.shape} for a batch of {len(batch)}, "
                              f"PyTorch {expected.shape}")
        differences.append(float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))))
        sizes.append(len(batch))
    worst = float("nan") if any(math.isnan(d) for d in differences) else max(differences)  # NaN fails the check
    return {"max_abs_diff": worst, "batch_sizes": sorted(set(sizes))}


# ---------------------------------------------------------------------------------------------- export

def export_run(run_dir, format: str = "onnx", out=None, verify: bool = True, *, tolerance: float = TOLERANCE,
               max_images: int = VERIFY_IMAGES) -> dict:
    """Write a finished run's network with its best weights as ``format`` (onnx or torchscript) to ``out``
    (default RUN/export/model.onnx or model.pt; a folder gets that name) plus the contract sidecar
    ``<file>.json``. With ``verify``, the exported model and the PyTorch model run on up to ``max_images`` of the
    run's test images (seeded random images when the dataset cannot be loaded: see "warnings") and their logits
    must agree within ``tolerance``, else ExportError and nothing is written.

    Returns {"path", "sidecar", "format", "bytes", "contract", "verification" (None without ``verify``),
    "warnings"}.
    """
    format = check_export_options(format, out, verify, tolerance, max_images)
    run, meta = finished_run(run_dir)
    path = output_path(run, format, out)
    modules = _modules(format, verify)
    net, meta = load_run(run.path)
    record = contract(meta, format, run)
    data = serialize(net, format, record["input"]["image_size"], record, modules)
    verification, warnings_ = None, []
    if verify:
        x, source, warning = verification_inputs(run, meta, max_images)
        warnings_ += [warning] if warning else []
        verification = {**source, **compare(net, load_exported(data, format, modules), x), "tolerance": tolerance}
        if not verification["max_abs_diff"] <= tolerance:
            raise ExportError(f"{run.path}: the {format} export does not reproduce the PyTorch model: max "
                              f"|difference| of the logits {verification['max_abs_diff']:.3g} on "
                              f"{verification['images']} {_described(verification)} exceeds the tolerance "
                              f"{tolerance:g}; nothing was written")
    sidecar = sidecar_path(path)
    _make_folder(path)
    storage.atomic_write_bytes(path, data)
    storage.write_json(sidecar, {**record, "file": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                              "verification": verification})
    return {"path": path, "sidecar": sidecar, "format": format, "bytes": len(data), "contract": record,
            "verification": verification, "warnings": warnings_}


def verification_line(verification: dict | None) -> str:
    """``verified against PyTorch on 56 test images: max |difference| 2.4e-06 (tolerance 1.0e-04)``."""
    if verification is None:
        return "not verified (verification was turned off)"
    return (f"verified against PyTorch on {verification['images']} {_described(verification)}: max |difference| "
            f"{verification['max_abs_diff']:.1e} (tolerance {verification['tolerance']:.1e})")


def _described(verification: dict) -> str:
    """What was compared, after its count: "test images", "of 3000 test images", "random images"."""
    if verification["source"] == "random":
        return "random images"
    return "test images" if verification["of"] == verification["images"] else f"of {verification['of']} test images"


def _finite(value):
    """JSON has no NaN (an undefined validation AUC): None instead."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
