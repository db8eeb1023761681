"""The Python API: ``txkit.train``, ``txkit.Run``, experiments and the registries, for notebooks and scripts.

Everything here returns values instead of printing them; progress bars are rich's, which render in a
terminal and in Jupyter alike. Torch is imported only when something trains or predicts.
"""

from __future__ import annotations

from pathlib import Path

from txkit.config import TrainConfig
from txkit.rundir import RunDir


def train(config: TrainConfig | None = None, /, *, out: str | Path | None = None, progress: bool = True,
          **fields) -> "Run":
    """Train one run and return it: ``txkit.train(backbone="resnet18", strategy="last-layer", out="runs/a")``.

    Pass a :class:`TrainConfig` or its fields (not both); a bad value raises ``ConfigError`` naming the field.
    """
    from txkit.training import session

    if config is not None and fields:
        raise TypeError("pass a TrainConfig or fields, not both (use config.replace(**fields))")
    cfg = config if config is not None else TrainConfig.create(**fields)
    run_dir, _ = session.train(cfg, str(out) if out is not None else None, console=_console(progress))
    return Run(run_dir)


def resume(path: str | Path, *, progress: bool = True, skip_bad_images: bool = False) -> "Run":
    """Continue an interrupted run (a finished one is returned as it is); ``skip_bad_images=True`` skips
    unreadable images from now on (recorded in the run's config.json)."""
    from txkit.training import session

    run_dir, _ = session.resume(str(path), console=_console(progress), skip_bad_images=skip_bad_images)
    return Run(run_dir)


class Run:
    """A run directory: its config, summary and metrics, and what can be done with its best checkpoint."""

    def __init__(self, path: str | Path):
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

    def evaluate(self, split: str = "test", *, bootstrap: int = 1000, ci_level: float = 0.95,
                 device: str = "auto") -> dict:
        """The metrics ``txkit evaluate --json`` prints (with confidence intervals and calibration); ``device``
        auto runs on the GPU when there is one."""
        from txkit.run.evaluate import check_interval_options, evaluate_run

        check_interval_options(bootstrap, ci_level)
        return evaluate_run(self.path, split, bootstrap=bootstrap, ci_level=ci_level, device=device)

    def predict(self, images, *, device: str = "auto") -> list[dict]:
        """Classify image files: one dict per image with ``prediction``, ``probability``, ``probabilities``."""
        from txkit.run.predict import predict_images

        return predict_images(self.path, [str(i) for i in _as_list(images)], device=device)

    def visualize(self, method: str, images, **options):
        """Run a visualizer on image files with the run's network; returns what was written."""
        from txkit.visualizers.pipeline import visualize

        return visualize(self.path, method, [str(i) for i in _as_list(images)], **options)

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
    from txkit.experiments.runner import run_experiment as run

    return run(path, out, jobs=jobs, console=_console(progress), overrides=overrides)


def report_experiment(directory: str | Path) -> dict:
    """Write DIR/report/ (tables, plots, statistics) and return the report as a dict."""
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


def _as_list(images) -> list:
    return [images] if isinstance(images, (str, Path)) else list(images)


def _console(progress: bool):
    from rich.console import Console

    return Console(stderr=True) if progress else Console(quiet=True)
