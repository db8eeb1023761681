"""`txkit export` and Run.export (docs/training.md, "Exporting a model"): ONNX and TorchScript files that carry
their input contract and reproduce the PyTorch logits, and one-line errors for what cannot be exported."""

import json
import re
import shutil
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from faults import assert_one_line_error, tree_hashes
from helpers import run_txkit

import txkit
from txkit.errors import TxkitError
from txkit.run import export
from txkit.run.export import ExportError, export_run
from txkit.training.engine import load_dataset
from txkit.run.load import load_run

SIZE = 32


@pytest.fixture
def run_dir(finished_run_copy):
    """A copy of the suite's finished one-epoch run (resnet18 at 32 px on 7 x 6 synthetic images per split):
    exports write into the run directory."""
    return finished_run_copy


@pytest.fixture
def test_images(run_dir):
    """How many test images the run's dataset has."""
    return len(load_dataset(txkit.Run(run_dir).config).splits["test"])


@pytest.fixture
def run_copy(run_dir):
    """A test's own copy of the finished run (run_dir already is one)."""
    return run_dir


def torchscript_module(path):
    extra = {export.EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[export.EXTRA_FILE])


def test_torchscript_export_verifies_on_the_test_images_and_matches_predict(run_dir, test_images, tmp_path):
    result = txkit.Run(run_dir).export("torchscript")
    assert result["path"] == run_dir / "export" / "model.pt" and result["path"].is_file()
    verification = result["verification"]
    assert verification["source"] == "test" and verification["images"] == test_images > 1
    assert 0 <= verification["max_abs_diff"] <= export.TOLERANCE
    assert 1 in verification["batch_sizes"] and max(verification["batch_sizes"]) > 1  # the batch axis is free
    module, inside = torchscript_module(result["path"])
    sidecar = json.loads(result["sidecar"].read_text())
    assert result["sidecar"].name == "model.pt.json" and sidecar.pop("verification") == verification
    assert sidecar.pop("file") == "model.pt" and len(sidecar.pop("sha256")) == 64
    assert sidecar == inside == result["contract"]

    # The contract's preprocessing, done by hand (8-bit grey resized bicubic as uint8, / 255, no normalisation),
    # gives through the exported model the probabilities `txkit predict` gives.
    image = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (45, 40), dtype=np.uint8)).save(image)
    gray = Image.open(image).convert("L").resize((SIZE, SIZE), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(gray, dtype=np.float32) / np.float32(255.0))[None, None]
    assert inside["input"]["shape"] == ["batch", 1, SIZE, SIZE] and inside["input"]["range"] == [0.0, 1.0]
    with torch.no_grad():
        probabilities = torch.softmax(module(x), dim=1)[0].numpy()
    predicted = txkit.Run(run_dir).predict(image)[0]["probabilities"]
    np.testing.assert_allclose(probabilities, [predicted[c] for c in inside["classes"]], rtol=0, atol=1e-6)
    with torch.no_grad():  # several images at once: the traced batch size (2) is not baked in
        assert module(torch.rand(5, 1, SIZE, SIZE)).shape == (5, len(inside["classes"]))


def test_onnx_export_verifies_with_onnxruntime_and_holds_the_contract(run_dir, test_images, tmp_path):
    import onnxruntime

    result = export_run(run_dir, "onnx", out=tmp_path / "out" / "chest.onnx")
    path = tmp_path / "out" / "chest.onnx"
    assert result["path"] == path and path.is_file() and result["sidecar"] == tmp_path / "out" / "chest.onnx.json"
    assert result["verification"]["images"] == test_images and result["verification"]["max_abs_diff"] <= 1e-4
    assert not list(path.parent.glob(".*.tmp"))  # the atomic writes left no temporary file

    session_ = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    contract = json.loads(session_.get_modelmeta().custom_metadata_map["txkit"])
    resolved = txkit.Run(run_dir).resolved
    assert contract["classes"] == resolved["classes"] and len(contract["classes"]) == 7
    assert contract["task"] == "multiclass" and contract["txkit_version"] == txkit.__version__
    assert contract["input"]["image_size"] == SIZE and contract["input"]["channels"] == 1
    assert contract["input"]["dtype"] == "float32"
    assert contract["intensity"]["rule"] == "auto"
    assert contract["intensity"]["resolved"] == {"8-bit": "8-bit grey / 255"}
    assert contract["intensity"]["key"] == resolved["intensity"]["key"]
    sidecar = json.loads(result["sidecar"].read_text())
    assert {k: v for k, v in sidecar.items() if k not in ("verification", "file", "sha256")} == contract
    (image,) = session_.get_inputs()
    assert image.name == "image" and image.shape[1:] == [1, SIZE, SIZE] and isinstance(image.shape[0], str)

    net, _ = load_run(run_dir)
    for batch in (1, 3):  # the dynamic batch axis
        x = torch.rand(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        (logits,) = session_.run(["logits"], {"image": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(logits, net(x).numpy(), rtol=0, atol=1e-4)


def test_cli_export_writes_the_model_and_reports_the_verification(run_dir, test_images, tmp_path):
    out = tmp_path / "cli" / "model.onnx"
    result = run_txkit("export", str(run_dir), "--format", "onnx", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (tmp_path / "cli" / "model.onnx.json").is_file()
    assert f"wrote {out} (onnx, " in result.stdout
    assert "(N, 1, 32, 32) float32, one grayscale channel in [0, 1] after intensity rule auto" in result.stdout
    match = re.search(r"verified against PyTorch on (\d+) test images: max \|difference\| (\S+) \(tolerance",
                      result.stdout)
    assert match, result.stdout
    assert int(match.group(1)) == test_images and float(match.group(2)) <= 1e-4


def test_cli_no_verify_and_json(run_dir, tmp_path):
    result = run_txkit("export", str(run_dir), "--format", "torchscript", "--out", str(tmp_path) + "/", "--no-verify",
                       "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["path"] == str(tmp_path / "model.pt") and data["verification"] is None
    assert json.loads((tmp_path / "model.pt.json").read_text())["verification"] is None


def test_a_model_that_does_not_match_pytorch_is_refused_and_not_written(run_dir, tmp_path, monkeypatch):
    real = export.serialize

    def drifted(net, *args):  # export another copy of the network, its head's bias off by 0.01
        with torch.no_grad():
            shifted = load_run(run_dir)[0]
            shifted.get_submodule(shifted.head_path).bias.add_(0.01)
        return real(shifted, *args)

    monkeypatch.setattr(export, "serialize", drifted)
    with pytest.raises(ExportError, match=r"does not reproduce the PyTorch model: max \|difference\| of the logits "
                                          r"0\.01 .* exceeds the tolerance 0\.0001; nothing was written"):
        export_run(run_dir, "torchscript", out=tmp_path / "m.pt", max_images=4)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the run copy only: nothing was written


def test_unloadable_dataset_falls_back_to_random_images_with_a_warning(run_dir, tmp_path, monkeypatch):
    def gone(cfg):
        raise txkit.ConfigError("the data folder /data/dld is gone")

    monkeypatch.setattr(export, "load_dataset", gone)
    result = export_run(run_dir, "torchscript", out=tmp_path / "m.pt", max_images=4)
    assert result["verification"]["source"] == "random"
    assert result["verification"]["images"] == export.RANDOM_INPUTS
    assert result["warnings"] == ["cannot load the run's test images (the data folder /data/dld is gone); verifying "
                                  f"on {export.RANDOM_INPUTS} random images (seed 0) instead"]
    assert export.verification_line(result["verification"]).startswith(
        f"verified against PyTorch on {export.RANDOM_INPUTS} random images: max |difference| ")


def test_bad_format_and_arguments_are_one_line_errors(run_dir, tmp_path):
    result = run_txkit("export", str(run_dir), "--format", "pdf")
    assert_one_line_error(result, "--format", "onnx or torchscript", "'pdf'")
    result = run_txkit("export", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "m.onnx"))
    assert_one_line_error(result, "--out", "m.onnx", "--format onnx")
    run = txkit.Run(run_dir)
    for kwargs, name in (({"format": "pdf"}, "`format`"), ({"format": 1}, "`format`"), ({"out": 3}, "`out`"),
                         ({"verify": "yes"}, "`verify`")):
        with pytest.raises(TxkitError, match=name):
            run.export(**kwargs)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the run copy only: nothing was written


def test_non_run_and_unfinished_run_are_one_line_errors(run_copy, tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    assert_one_line_error(run_txkit("export", str(folder)), str(folder), "not a txkit run directory")
    summary = run_copy / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "interrupted"}))
    before = tree_hashes(run_copy)
    line = assert_one_line_error(run_txkit("export", str(run_copy), "--format", "torchscript"), str(run_copy),
                                 "has not finished", "interrupted", f"txkit train --resume {run_copy}")
    assert "export" in line and tree_hashes(run_copy) == before  # nothing written
    summary.unlink()
    assert_one_line_error(run_txkit("export", str(run_copy)), "no summary.json yet")


def test_missing_onnxruntime_names_the_extra(run_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    shutil.rmtree(run_copy / "export", ignore_errors=True)  # what earlier tests exported
    with pytest.raises(ExportError, match=r"^ONNX export needs onnxruntime, which is not installed: "
                                          r"pip install 'txkit\[export\]'$"):
        export_run(run_copy, "onnx")
    assert not (run_copy / "export").exists()  # not even the folder


def test_out_never_overwrites_the_run_s_own_files(run_copy):
    before = tree_hashes(run_copy)
    for out, name in ((run_copy / "model.safetensors", "model.safetensors"), (run_copy / "config", "config.json")):
        with pytest.raises(TxkitError, match=f"`out` .*would overwrite the run's {re.escape(name)}"):
            export_run(run_copy, "torchscript", out=out)
    assert tree_hashes(run_copy) == before


def test_a_model_that_fails_on_another_batch_size_is_refused(run_dir, tmp_path, monkeypatch):
    real = export.load_exported

    def batch_of_two_only(*args):  # what a batch size baked into the graph looks like
        run = real(*args)

        def checked(x):
            if len(x) != 2:
                raise RuntimeError(f"Got invalid dimensions for input: image, index 0 Got: {len(x)} Expected: 2")
            return run(x)
        return checked

    monkeypatch.setattr(export, "load_exported", batch_of_two_only)
    with pytest.raises(ExportError, match=r"fails on a batch of 1 image\(s\) \(RuntimeError: Got invalid dimensions"):
        export_run(run_dir, "torchscript", out=tmp_path / "m.pt", max_images=4)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the run copy only: nothing was written
