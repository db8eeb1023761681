"""Helpers for testing a txkit plugin (public: ``from txkit.testing import ...`` or ``txkit.testing.NAME``).

A plugin's tests import txkit only through ``txkit`` and this module; docs/plugins.md, "Public API", lists
each helper:

- ``tiny_config(**overrides)``: a :class:`~txkit.TrainConfig` that trains in seconds on a CPU;
- ``train_tiny(out, **overrides)``: train one such run into the folder ``out`` and return its :class:`~txkit.Run`;
- ``write_image(path, pixels=None, *, truncate=False)``, ``write_image_folder(root, ...)``: image files, and a
  tiny ``imagefolder`` tree;
- ``check_dataset(dataset, *, file_backed=None)``: assert that a dataset keeps the ``TxDataset`` contract;
- ``data_info(dataset)``: the report ``txkit data info --json`` prints, for a dataset built in the test;
- ``run_cli(args)``: run the real ``txkit`` command in-process; its exit code, standard output and standard error.

Importing this module imports neither torch nor numpy; each helper imports what it uses.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from txkit.config.train import TrainConfig
    from txkit.datasets.base import TxDataset

__all__ = ["CliResult", "TINY", "check_dataset", "data_info", "run_cli", "tiny_config", "train_tiny", "write_image",
           "write_image_folder"]

#: What :func:`tiny_config` sets: the built-in synthetic set (12 images a split at 32 px), resnet18 with random
#: weights, one epoch on the CPU.
TINY = {"dataset": "synthetic-dld", "data_options": {"per_class": "6", "size": "32"}, "backbone": "resnet18",
        "weights": "none", "strategy": "full", "epochs": 1, "batch_size": 16, "seed": 0, "device": "cpu"}
TINY_SIZE = 32


def tiny_config(**overrides) -> "TrainConfig":
    """A TrainConfig that trains in seconds on a CPU: :data:`TINY` with ``overrides`` applied.

    Naming another ``dataset`` drops the synthetic set's ``data_options`` and reads the images at
    ``image_size`` 32 (pass ``data_options`` or ``image_size`` to change either). A bad value raises
    :class:`~txkit.ConfigError` naming the field.
    """
    from txkit.config.train import TrainConfig

    base = dict(TINY)
    if overrides.get("dataset", TINY["dataset"]) != TINY["dataset"]:
        base["data_options"] = {}
        base["image_size"] = TINY_SIZE
    return TrainConfig.create(**{**base, **overrides})


def train_tiny(out: str | os.PathLike, **overrides):
    """Train ``tiny_config(**overrides)`` into the new folder ``out`` (no progress bar); the finished :class:`Run`.

    ``run.summary["status"]`` is ``"completed"`` when it trained; ``run.evaluate()``, ``run.predict(files)`` and
    ``run.visualize(method, files)`` work on it as on any run.
    """
    import txkit  # the public face, as a plugin's own tests would use it

    return txkit.train(tiny_config(**overrides), out=out, progress=False)


def write_image(path: str | os.PathLike, pixels: "np.ndarray | None" = None, *, truncate: bool = False) -> Path:
    """Write ``pixels`` as the image file ``path`` (its folders made; the suffix picks the format); returns the path.

    ``pixels``: (H, W) ``uint8`` (8-bit gray), (H, W) ``uint16`` (16-bit gray: PNG or TIFF), (H, W) ``float32``
    in [0, 1] (float gray: TIFF), (H, W, 3) or (H, W, 4) ``uint8`` (RGB, RGBA: txkit reads their luminance);
    None: a 20 x 24 8-bit gray ramp. ``truncate`` keeps the first half of the written file: an unreadable image,
    for tests of a dataset's ``skip_bad_images``.
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    if pixels is None:
        ramp = np.add.outer(np.arange(20), np.arange(24))
        pixels = (ramp * 255 // ramp.max()).astype(np.uint8)
    pixels = np.asarray(pixels)
    gray = pixels.ndim == 2 and pixels.dtype.name in ("uint8", "uint16", "float32")
    colour = pixels.ndim == 3 and pixels.shape[2] in (3, 4) and pixels.dtype == np.uint8
    if not (gray or colour) or not pixels.size:
        raise TypeError(f"write_image takes (H, W) uint8, uint16 or float32 pixels, or (H, W, 3|4) uint8; got shape "
                        f"{pixels.shape} of {pixels.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)  # modes L, I;16, F, RGB, RGBA
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


def write_image_folder(root: str | os.PathLike, classes: Sequence[str] = ("a", "b"), per_class: int = 8,
                       size: int = TINY_SIZE, seed: int = 0) -> Path:
    """A tiny tree for the built-in ``imagefolder`` dataset: ``root/CLASS/N.png``, ``per_class`` seeded noise images of
    ``size`` x ``size`` per class, each class a little brighter than the one before (so a run can learn it);
    returns ``root``. Train on it with ``train_tiny(out, dataset="imagefolder", data_root=str(root))``."""
    import numpy as np

    root = Path(root)
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        for i in range(per_class):
            noise = rng.normal(64 + 128 * k / max(len(classes) - 1, 1), 24, (size, size))
            write_image(root / name / f"{i}.png", np.clip(noise, 0, 255).astype(np.uint8))
    return root


def check_dataset(dataset: "TxDataset", *, file_backed: bool | None = None, sample: int = 3,
                  size: int = TINY_SIZE) -> "TxDataset":
    """Assert that ``dataset`` keeps the TxDataset contract (an ``AssertionError`` says what is wrong); returns it.

    Checked: a :class:`~txkit.TxDataset` with unique class names, ``task`` multiclass or multilabel, a ``train``
    split and only train/val/test splits, each a :class:`~txkit.Split`; labels of shape (N,) with integer class
    indices (multiclass) or (N, K) floats in [0, 1] or NaN (multilabel); ids, groups, studies one per image; no
    image id in two splits (``check_splits``). Then ``sample`` images of every non-empty split (the first, the
    last and evenly between) are read three ways: ``image(i)`` (2-D ``uint8``), ``values(i)`` (the intensity
    reader: the same shape, and the info ``unit``, ``modality``, ``photometric``) and the network input txkit
    makes of them (the ``auto`` intensity rule fitted on those images, resized to ``size``: finite, in [0, 1]).

    ``file_backed``: True requires every split to be made by :func:`~txkit.file_split` (``sources``: one existing
    file per image, read through the intensity reader of files), False requires in-memory splits (no
    ``sources``); None checks ``sources`` only where a split has them.
    """
    import numpy as np

    from txkit.datasets.base import SPLITS, Split, TxDataset
    from txkit.datasets.intensity import IntensityRule, load_input
    from txkit.datasets.pixels import as_float

    assert isinstance(dataset, TxDataset), f"a dataset factory returns a txkit.TxDataset, got {type(dataset).__name__}"
    name = dataset.name
    classes = list(dataset.classes)
    assert classes and all(isinstance(c, str) and c for c in classes), f"{name}: classes must be non-empty names"
    assert len(set(classes)) == len(classes), f"{name}: class names repeat: {classes}"
    assert dataset.task in ("multiclass", "multilabel"), f"{name}: task {dataset.task!r} is not multiclass/multilabel"
    assert isinstance(dataset.info, dict), f"{name}: info must be a dict"
    assert "train" in dataset.splits and set(dataset.splits) <= set(SPLITS), \
        f"{name}: splits {sorted(dataset.splits)}; a dataset has train and optionally val and test"
    dataset.check_splits()
    for split_name, split in dataset.splits.items():
        where = f"{name} {split_name}"
        assert isinstance(split, Split), f"{where}: a split is a txkit.Split, got {type(split).__name__}"
        n = len(split)
        labels = np.asarray(split.labels)
        if dataset.task == "multiclass":
            assert labels.shape == (n,) and (n == 0 or np.issubdtype(labels.dtype, np.integer)), \
                f"{where}: multiclass labels are N integers, got shape {labels.shape} of {labels.dtype}"
            assert n == 0 or (labels.min() >= 0 and labels.max() < len(classes)), \
                f"{where}: labels outside 0..{len(classes) - 1}"
        else:
            assert labels.shape == (n, len(classes)) and (n == 0 or np.issubdtype(labels.dtype, np.floating)), \
                f"{where}: multilabel labels are (N, {len(classes)}) floats, got shape {labels.shape} of {labels.dtype}"
            known = labels[~np.isnan(labels)]
            assert known.size == 0 or (known.min() >= 0 and known.max() <= 1), f"{where}: labels outside [0, 1]"
        assert len(split.ids) == n, f"{where}: {len(split.ids)} ids for {n} images"
        for column in ("groups", "studies"):
            values = getattr(split, column)
            assert values is None or len(values) == n, f"{where}: {len(values)} {column} for {n} images"
        sources = split.sources
        if file_backed is True:
            assert sources is not None, f"{where}: no sources; build a split of image files with txkit.file_split"
        elif file_backed is False:
            assert sources is None, f"{where}: has sources, expected an in-memory split"
        if sources is not None:
            assert len(sources) == n, f"{where}: {len(sources)} sources for {n} images"
            missing = [s for s in sources if not os.path.isfile(s)]
            assert not missing, f"{where}: {len(missing)} sources are not files, e.g. {missing[0]}"
        if not n:
            continue
        picks = sorted({round(k * (n - 1) / max(sample - 1, 1)) for k in range(max(sample, 1))})
        for i in picks:
            image = split.image(i)
            assert isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.uint8 and image.size, \
                f"{where}: image({i}) must be a non-empty 2-D uint8 array, got {_described(image)}"
            values, info = split.values(i)
            assert np.shape(values) == image.shape, \
                f"{where}: values({i}) has shape {np.shape(values)}, image({i}) {image.shape}"
            assert {"unit", "modality", "photometric"} <= set(info), f"{where}: values({i}) info lacks unit/modality"
            if sources is not None:
                assert "format" in info, f"{where}: split with sources must read its files with the intensity " \
                                         f"reader (txkit.file_split), values({i}) did not"
        rule = IntensityRule.parse("auto").fit(split.subset(picks))
        for i in picks:
            x = as_float(load_input(split, i, size, rule))
            assert x.shape == (size, size) and np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1, \
                f"{where}: image {i} as network input is not a finite ({size}, {size}) array in [0, 1]"
    return dataset


def _described(value) -> str:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    return f"shape {shape} of {dtype}" if shape is not None else type(value).__name__


def data_info(dataset: "TxDataset", sample: int = 32, intensity_sample: int = 200) -> dict:
    """What ``txkit data info NAME --json`` prints, for a dataset built in the test: per split ``images``,
    ``patients``, ``studies``, ``positives`` (after the label policy), ``ignored``; ``image_size`` statistics on
    ``sample`` images; ``intensity`` on up to ``intensity_sample`` images a split; ``info``."""
    from txkit.datasets.info import dataset_info

    return dataset_info(dataset, sample=sample, intensity_sample=intensity_sample)


class CliResult(NamedTuple):
    """What :func:`run_cli` returns: ``exit_code``, ``output`` (standard output: what ``--json`` prints) and
    ``errors`` (standard error: ``Error: ...`` lines, warnings)."""

    exit_code: int
    output: str
    errors: str


def run_cli(args: str | Sequence[str | os.PathLike], *, env: dict[str, str] | None = None) -> CliResult:
    """Run ``txkit ARGS`` in this process (click's test runner over the real command, plugin commands
    included): ``code, output, errors = run_cli(["list", "--json"])``. ``args`` is a list, or a string split as
    a shell would; ``env`` sets environment variables for the call. An exception that escapes the command (not
    a txkit error, which is ``Error: ...`` and exit code 1) is raised here, with its traceback."""
    from click.testing import CliRunner

    import txkit  # the public face: this module is written against it, as a plugin's tests are

    argv = shlex.split(args) if isinstance(args, str) else [os.fspath(a) for a in args]
    result = CliRunner().invoke(txkit.build_cli(), argv, env=env, prog_name="txkit")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)
