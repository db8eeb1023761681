"""The Python API: ``txkit.train``, ``txkit.Run``, experiments and the registries, for notebooks and scripts.

Everything here returns values instead of printing them; progress bars are rich's, which render in a
terminal and in Jupyter alike. Torch is imported only when something trains or predicts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from txkit.config import TrainConfig
from txkit.errors import ConfigError, TxkitError
from txkit.rundir import RunDir

DEVICES = ("auto", "cpu", "cuda")
VISUALIZE_OPTIONS = ("layer", "target", "channel", "out", "threshold", "image_size", "options")


def train(config: TrainConfig | None = None, /, *, out: str | Path | None = None, progress: bool = True,
          **fields) -> "Run":
    """Train one run and return it: ``txkit.train(backbone="resnet18", strategy="last-layer", out="runs/a")``.

    Pass a :class:`TrainConfig` or its fields (not both); a bad value raises ``ConfigError`` naming the field.
    """
    from txkit.training import session

    if isinstance(config, (str, os.PathLike)):
        raise ConfigError(f"txkit.train got {str(config)!r} as its first argument: pass a TrainConfig or keyword "
                          f"fields; did you mean txkit.train(out={str(config)!r})?")
    if isinstance(config, dict):
        raise ConfigError("txkit.train got a dict as its first argument: pass a TrainConfig or keyword fields, "
                          "e.g. txkit.train(**fields) or txkit.train(txkit.TrainConfig(**fields))")
    if config is not None and not isinstance(config, TrainConfig):
        raise ConfigError(f"txkit.train got {_shown(config)} as its first argument: pass a TrainConfig or keyword "
                          f"fields, e.g. txkit.train(backbone='resnet18', out='runs/a')")
    if config is not None and fields:
        raise ConfigError(f"pass a TrainConfig or keyword fields, not both: use "
                          f"txkit.train(config.replace({', '.join(f'{k}=...' for k in fields)}))")
    _path("out", out, "a run directory", optional=True)
    _flag("progress", progress)
    cfg = config if config is not None else TrainConfig.create(**fields)
    run_dir, _ = session.train(cfg, str(out) if out is not None else None, console=_console(progress))
    return Run(run_dir)


def resume(path: str | Path, *, progress: bool = True, skip_bad_images: bool = False) -> "Run":
    """Continue an interrupted run (a finished one is returned as it is); ``skip_bad_images=True`` skips
    unreadable images from now on (recorded in the run's config.json)."""
    from txkit.training import session

    _path("path", path, "a run directory")
    _flag("progress", progress)
    _flag("skip_bad_images", skip_bad_images)
    run_dir, _ = session.resume(str(path), console=_console(progress), skip_bad_images=skip_bad_images)
    return Run(run_dir)


class Run:
    """A run directory: its config, summary and metrics, and what can be done with its best checkpoint."""

    def __init__(self, path: str | Path):
        _path("path", path, "a run directory")
        self._dir = RunDir(path)
        self._dir.config_json()  # one line when the folder is not a readable run

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def path(self) -> Path:
        return self._dir.path

    @property
    def config(self) -> TrainConfig:
        return self._dir.config()

    @property
    def resolved(self) -> dict:
        """What the config resolved to: classes, task, image size, stages, phases, weights used."""
        return self._dir.resolved()

    @property
    def summary(self) -> dict:
        return self._dir.summary() or {}

    @property
    def metrics(self) -> list[dict]:
        """One dict per committed epoch (the lines of metrics.jsonl)."""
        return self._dir.metrics()

    def evaluate(self, split: str | None = None, *, bootstrap: int = 1000, ci_level: float = 0.95,
                 device: str = "auto", dataset: str | None = None, data_root: str | Path | None = None,
                 data_options: dict | None = None, class_map: str | dict | None = None, by=None,
                 threshold: str | float | None = None) -> dict:
        """The metrics ``txkit evaluate --json`` prints (with confidence intervals and calibration); ``device``
        auto runs on the GPU when there is one. ``split``: default test.

        External validation: ``dataset`` (a registered name) with ``data_root``, ``data_options`` and
        ``class_map`` ("healthy=normal,sick=pneumonia" or a dict: the external class on the left, the run's on
        the right) scores that dataset with the run's recorded intensity rule and image size (its test split,
        else all of its images; ``split`` picks one, or "all"). ``by`` (a metadata column such as "sex", or a
        list): per-subgroup metrics and the largest gap. ``threshold`` ("youden", "f1", "sensitivity=0.9",
        "specificity=0.95" or a probability): per-class thresholds chosen on the val split, stored in the run for
        ``predict``, with sensitivity, specificity, PPV and NPV at them. A bad argument raises TxkitError naming
        it, before the network runs."""
        if split is not None and (not isinstance(split, str) or not split.strip()):
            raise TxkitError(f"`split` must be a split name such as 'test', 'val' or 'train', got {_shown(split)}")
        if isinstance(bootstrap, bool) or not isinstance(bootstrap, int):
            raise TxkitError(f"`bootstrap` must be a whole number >= 0 of resamples (0: no intervals), e.g. 1000, "
                             f"got {_shown(bootstrap)}")
        if isinstance(ci_level, bool) or not isinstance(ci_level, (int, float)) or not math.isfinite(ci_level):
            raise TxkitError(f"`ci_level` must be a number strictly between 0 and 1, e.g. 0.95, got {_shown(ci_level)}")
        _device(device)
        if dataset is not None and (not isinstance(dataset, str) or not dataset.strip()):
            raise TxkitError(f"`dataset` must be a registered dataset name such as 'csv' "
                             f"(txkit.list_entries('datasets')) or None, got {_shown(dataset)}")
        _path("data_root", data_root, "the external dataset's folder or file", optional=True)
        if data_options is not None and (not isinstance(data_options, dict) or
                                         not all(isinstance(k, str) for k in data_options)):
            raise TxkitError(f"`data_options` must be a dict of option names to values, e.g. "
                             f"{{'subgroups': 'sex,age'}}, or None, got {_shown(data_options)}")
        if class_map is not None and not isinstance(class_map, (str, dict)):
            raise TxkitError(f"`class_map` must be 'EXTERNAL=RUN,...' or a dict {{external class: run class}}, got "
                             f"{_shown(class_map)}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (str, int, float))):
            raise TxkitError(f"`threshold` must be 'youden', 'f1', 'sensitivity=0.9', 'specificity=0.95' or a "
                             f"probability such as 0.5, got {_shown(threshold)}")
        from txkit.run.evaluate import check_by, check_interval_options, evaluate_run

        check_interval_options(bootstrap, ci_level)
        check_by(by)
        return evaluate_run(self.path, split, bootstrap=bootstrap, ci_level=ci_level, device=device,
                            dataset=dataset, data_root=data_root, data_options=data_options, class_map=class_map,
                            by=by, threshold=threshold)

    def predict(self, images, *, device: str = "auto", threshold: str | float | None = None) -> list[dict]:
        """Classify image files (a path or a list of them): one dict per image with ``prediction``,
        ``probability``, ``probabilities``; with the run's thresholds.json (``evaluate(threshold=...)``) or
        ``threshold`` (a rule chosen on the val split now, or a probability; not stored) also ``decisions``."""
        files = _images(images)
        _device(device)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (str, int, float))):
            raise TxkitError(f"`threshold` must be 'youden', 'f1', 'sensitivity=0.9', 'specificity=0.95' or a "
                             f"probability such as 0.5, got {_shown(threshold)}")
        from txkit.run.predict import predict_images

        return predict_images(self.path, files, device=device, threshold=threshold)

    def visualize(self, method: str, images=(), **options):
        """Run a visualizer on image files (a path or a list of them, or 2-D arrays; none for visualizers that
        take no image) with the run's network; returns what was written. ``options``: the keywords of
        :func:`txkit.visualizers.visualize` (layer, target, channel, out, threshold, image_size, options)."""
        from txkit.visualizers.contract import Visualizer

        if not isinstance(method, Visualizer) and (not isinstance(method, str) or not method.strip()):
            raise TxkitError(f"`method` must be a visualizer name (txkit.list_entries('visualizers')) or a "
                             f"Visualizer, got {_shown(method)}")
        unknown = [name for name in options if name not in VISUALIZE_OPTIONS]
        if unknown:
            raise TxkitError(f"Run.visualize takes no argument {unknown[0]!r}; use {', '.join(VISUALIZE_OPTIONS)} "
                             f"(a visualizer's own options go in options={{...}})")
        files = _images(images, arrays=True)
        from txkit.visualizers.pipeline import visualize

        return visualize(self.path, method, files, **options)

    def export(self, format: str = "onnx", *, out: str | Path | None = None, verify: bool = True) -> dict:
        """Write the best checkpoint as ``format`` ("onnx" or "torchscript") with its input contract, to ``out``
        (default RUN/export/model.onnx or model.pt) plus the sidecar ``<file>.json``; with ``verify``, only
        after its logits matched PyTorch's on the run's test images. Returns {"path" (a Path), "sidecar",
        "format", "bytes", "contract", "verification", "warnings"}; a bad argument raises TxkitError naming it.
        """
        from txkit.run.export import export_run

        return export_run(self.path, format, out=out, verify=verify)


def run_experiment(path: str | Path, *, out: str | Path | None = None, jobs: int = 1, progress: bool = True,
                   overrides: dict[str, str] | None = None) -> tuple[Path, dict[str, int]]:
    """Run (or continue) an experiment file; returns its directory and the count of runs per status."""
    _path("path", path, "an experiment file")
    _path("out", out, "an experiment directory", optional=True)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise TxkitError(f"`jobs` must be a whole number >= 1 (runs at once), got {_shown(jobs)}")
    _flag("progress", progress)
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise TxkitError(f"`overrides` must be a dict of 'table.field': value, e.g. {{'defaults.epochs': '3'}} "
                             f"(what --set gives), got {_shown(overrides)}")
        for key, value in overrides.items():
            if not isinstance(key, str) or value is None:
                raise TxkitError(f"`overrides` must map 'table.field' names to values, e.g. "
                                 f"{{'defaults.epochs': '3'}}, got {key!r}: {value!r}")
    from txkit.experiments.runner import run_experiment as run

    return run(path, out, jobs=jobs, console=_console(progress), overrides=overrides)


def report_experiment(directory: str | Path) -> dict:
    """Write DIR/report/ (tables, plots, statistics) and return the report as a dict."""
    _path("directory", directory, "an experiment directory")
    from txkit.experiments.report import build_report

    return build_report(Path(directory))


def list_entries(kind: str | None = None) -> list[dict]:
    """Registered entries ({"kind", "name", "description", "provided_by"}), of one kind or all."""
    from txkit.plugins import get_plugins
    from txkit.registry import KINDS, PLURALS

    singular = {**{k: k for k in KINDS}, **{v: k for k, v in PLURALS.items()}}
    if kind is not None and kind not in singular:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    kinds = [singular[kind]] if kind else list(KINDS)
    return [entry.as_dict() for entry in get_plugins().entries(kinds)]


# --- arguments, checked at the boundary: one line naming the argument and what it takes ----------------------
def _shown(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _path(name: str, value, what: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        alternative = " or None" if optional else ""
        raise TxkitError(f"`{name}` must be {what} (a str or Path){alternative}, got {_shown(value)}")


def _flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TxkitError(f"`{name}` must be True or False, got {_shown(value)}")


def _device(device) -> None:
    ok = isinstance(device, str) and (device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit()))
    if not ok:
        raise TxkitError(f"`device` must be auto, cpu or cuda (or cuda:N), got {_shown(device)}")


def _images(images, arrays: bool = False) -> list:
    """A path or a list of paths, as strings (with ``arrays``, also 2-D arrays, which ``visualize`` takes, and
    None for no image); anything else names `images` and what it takes."""
    if images is None and arrays:
        return []
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    elif isinstance(images, (bytes, dict)) or not hasattr(images, "__iter__") or hasattr(images, "ndim"):
        raise TxkitError(f"`images` must be an image file path or a list of them, e.g. ['a.png', 'b.dcm'], got "
                         f"{_shown(images)}")
    files = list(images)
    for index, item in enumerate(files):
        if arrays and getattr(item, "ndim", None) == 2:
            continue
        if not isinstance(item, (str, os.PathLike)) or not str(item).strip():
            kind = "an image file path (a str or Path)" + (" or a 2-D array" if arrays else "")
            raise TxkitError(f"`images`[{index}] must be {kind}, got {_shown(item)}")
    return [item if getattr(item, "ndim", None) == 2 else str(item) for item in files]


def _console(progress: bool):
    from rich.console import Console

    return Console(stderr=True) if progress else Console(quiet=True)
