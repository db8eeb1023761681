"""The visualize pipeline shared by `txkit visualize` and Python callers: networks (runs or backbones), images,
layer and target, the visualizer, and the PNGs (input, map, overlay, extras) and comparison grids it writes.

Python API::

    from txkit.visualizers import visualize, load_subjects

    result = visualize("runs/resnet18", "gradcam", ["xray.png"], target="abnormal", out="vis")
    result.files        # [Path('vis/xray_input.png'), Path('vis/xray_gradcam.png'), ...]
    result.warnings     # e.g. the chosen layer is too coarse
    result.subjects[0].maps                     # (N, S, S) maps at the network's input size S
    result.subjects[0].pictures[0]["overlay"]   # what was written, at the image's resolution

``visualize`` prints nothing; it returns a :class:`VisualizationResult`. ``out=None`` writes no file and
only returns the arrays.

Each per-image PNG is at the input image's own resolution (its shorter side enlarged to at least
:data:`MIN_DISPLAY_SIDE` pixels, aspect kept) under a title band: method, layer, target (or top) class and
its score, the image and the network's input size, and a warning when the layer is coarser than
:data:`COARSE_SIDE` positions a side. The maps are computed at the network's input size (the image
resized to S x S) and resized back bilinearly; grids of channels are enlarged with nearest neighbours.

This module imports neither torch nor numpy at import time (the CLI module imports it).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from txkit.errors import TxkitError
from txkit.visualizers.contract import ReportVisualizer, Visualizer

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from txkit.visualizers.models import Subject

COARSE_SIDE = 7          # a layer whose output is smaller than this on a side gives block maps: warn
MIN_DISPLAY_SIDE = 224   # per-image PNGs: the image's shorter side is enlarged to at least this
MIN_GRID_SIDE = 256      # non-aligned pictures (kernel grids): nearest-neighbour enlarged to at least this
DEFAULT_THRESHOLD = 0.3

__all__ = ["COARSE_SIDE", "LayerInfo", "SubjectResult", "VisualizationResult", "list_layers", "load_subjects",
           "visualize"]


@dataclass
class LayerInfo:
    """One row of ``txkit visualize --list-layers``."""

    path: str
    type: str
    shape: tuple[int, ...] | None  # output shape without the batch axis, None when it returns no tensor
    stage: str
    default: bool


@dataclass
class SubjectResult:
    """What one network gave.

    ``maps`` are the visualizer's maps at the network's input size (N, S, S) (for a non-aligned visualizer
    its one picture, (1, H, W[, 3])); ``heat`` the overlay heat, ``extras`` its extra pictures, all as the
    visualizer returned them. ``pictures`` has per image the pictures as written (at the image's
    resolution, without the title): ``{"input", "map", "overlay", <extra suffix>...}``. ``classes`` and
    ``scores`` per image: the target (or top) class name and its probability.
    """

    label: str
    layer: str | None
    layer_shape: tuple[int, ...] | None
    image_size: int
    maps: Any
    heat: Any = None
    extras: dict = field(default_factory=dict)
    pictures: list[dict] = field(default_factory=list)
    target: Any = None  # the parsed target: None (each image's top class), an index or a list of them
    classes: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class VisualizationResult:
    """Everything :func:`visualize` made: the files (a comparison grid first), the warnings, per network."""

    method: str
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    subjects: list[SubjectResult] = field(default_factory=list)


# --- subjects -----------------------------------------------------------------------------------------
def load_subjects(run_dirs: Sequence[str | Path] = (), backbone: str | None = None, weights: str = "imagenet",
                  num_classes: int | None = None, image_size: int | None = None) -> list["Subject"]:
    """The networks to visualize: finished runs, or ``backbone`` with ``weights`` (imagenet keeps the
    1000-class ImageNet head; none; a file or a run directory). Labels are made unique."""
    from txkit.visualizers.models import subject_from_run, subject_from_weights

    if run_dirs and backbone:
        raise TxkitError("give RUN_DIRs or `backbone`, not both")
    if not run_dirs and not backbone:
        raise TxkitError("give one or more RUN_DIRs, or `backbone` B `weights` W")
    if backbone:
        return [subject_from_weights(backbone, weights, num_classes, image_size)]
    subjects = [_with_rule(subject_from_run(run), run) for run in run_dirs]
    for subject in subjects:
        subject.image_size = image_size or subject.image_size
    return _unique_labels(subjects)


def _as_subjects(subjects, image_size: int | None) -> list["Subject"]:
    """A run directory, a Subject, a bare network, or a sequence of them, as Subjects."""
    from torch import nn

    from txkit.visualizers.models import Subject, subject_from_run

    items = [subjects] if isinstance(subjects, (str, Path, Subject, nn.Module)) else list(subjects)
    if not items:
        raise TxkitError("nothing to visualize: give a run directory, a Subject or a network")
    out = []
    for index, item in enumerate(items):
        if isinstance(item, (str, Path)):
            subject = _with_rule(subject_from_run(item), item)
        elif isinstance(item, Subject):
            subject = item
        elif isinstance(item, nn.Module):
            subject = Subject(f"net{index}" if len(items) > 1 else "net", item, image_size or 224)
        else:
            raise TxkitError(f"cannot visualize a {type(item).__name__}: give a run directory, a Subject or a network")
        if image_size:
            subject.image_size = image_size
        out.append(subject)
    return _unique_labels(out)


def _with_rule(subject: "Subject", run_dir) -> "Subject":
    """The run's intensity rule on its subject: image files reach its network as they reached it in training."""
    from txkit.datasets.intensity import run_rule
    from txkit.rundir import RunDir

    subject.intensity = run_rule(RunDir(run_dir).config_json())
    return subject


def _unique_labels(subjects: list) -> list:
    seen: dict[str, int] = {}
    for subject in subjects:
        seen[subject.label] = seen.get(subject.label, 0) + 1
        if seen[subject.label] > 1:
            subject.label = f"{subject.label}-{seen[subject.label]}"
    return subjects


def list_layers(subject: "Subject") -> list[LayerInfo]:
    """Every module of the subject's network with its output shape at the subject's input size, its stage,
    and which one is the default layer."""
    import torch

    from txkit.visualizers.base import default_layer, output_shapes, stages_of

    net = subject.net
    example = torch.zeros(1, 1, subject.image_size, subject.image_size)
    shapes = output_shapes(net, example)
    stage_of = {path: name for name, paths in stages_of(net) for path in paths}
    chosen = default_layer(net, example)
    rows = []
    for path, module in net.named_modules():
        if not path:
            continue
        stage = next((name for prefix, name in stage_of.items() if path == prefix or path.startswith(prefix + ".")), "")
        shape = tuple(shapes[path][1:]) if path in shapes else None
        rows.append(LayerInfo(path, type(module).__name__, shape, stage, path == chosen))
    return rows


# --- the pipeline -------------------------------------------------------------------------------------
def create_visualizer(method: str | Visualizer, options: dict | None = None) -> Visualizer:
    """A registered visualizer by name (with its options), or ``method`` itself when it is one."""
    if isinstance(method, Visualizer):
        return method
    if not method:
        raise TxkitError("--method is required (`txkit list visualizers` shows them)")
    from txkit.plugins import create, registry

    visualizer = create("visualizer", method, **(options or {}))
    if not isinstance(visualizer, Visualizer):
        provider = registry("visualizer").get(method).provided_by
        raise TxkitError(f"visualizer {method!r} (from {provider}) gave a {type(visualizer).__name__}, not a "
                         f"txkit.visualizers.Visualizer subclass (docs/plugins.md, Public API)")
    return visualizer


def visualize(subjects, method: str | Visualizer, images: Sequence = (), *, layer: str | None = None,
              target=None, channel=None, out: str | Path | None = "visualizations",
              threshold: float = DEFAULT_THRESHOLD, image_size: int | None = None,
              options: dict | None = None) -> VisualizationResult:
    """Run a visualizer on one or more networks and write its pictures; prints nothing.

    - ``subjects``: a run directory, a :class:`~txkit.visualizers.Subject` (:func:`load_subjects` makes
      them, also for a backbone with ImageNet weights), a network taking (N, 1, H, W) in [0, 1], or a
      sequence of these. Several give one comparison grid ``compare_<method>.png`` with a column per network
      and a folder per network.
    - ``method``: a registered visualizer name (``options`` go to its factory) or a
      :class:`~txkit.visualizers.Visualizer` instance.
    - ``images``: image files (any size, converted to gray) or 2-D arrays; refused for visualizers that
      do not use images (``filters``, reports), required for the others.
    - ``layer``: module path, backbone-relative path or stage name; None: the visualizer's default.
    - ``target``: class index or name, or a list of them (a multi-label target); None: each image's top
      class. ``channel``: an index or ``"top"`` (or their text).
    - ``out``: output directory; None writes nothing and returns only the arrays.
    - ``threshold``: overlay heat at or below this is transparent. ``image_size``: the network input size
      (default: the run's size, or the backbone's native size).
    """
    from txkit.visualizers.base import parse_channel

    visualizer = create_visualizer(method, options)
    subjects = _as_subjects(subjects, image_size)
    images = list(images or ())
    name = visualizer.name
    if images and not visualizer.uses_images:
        raise TxkitError(f"--image: {name} does not depend on the input image (its result is the same for every "
                         f"image), so it takes no --image; drop --image")
    if isinstance(visualizer, ReportVisualizer):
        if out is None:
            raise TxkitError(f"{name} writes a report; give an output directory")
        files = visualizer.write([(s.label, s.net) for s in subjects], Path(out), layer=layer, image_size=image_size)
        return VisualizationResult(name, list(files), [], [SubjectResult(s.label, layer, None, s.image_size, None)
                                                             for s in subjects])
    if visualizer.uses_images and not images:
        raise TxkitError(f"{name} needs at least one --image")
    channel = parse_channel(channel) if isinstance(channel, str) else channel
    stems = unique_stems(images)
    several = len(subjects) > 1
    result = VisualizationResult(name)
    checks = [_input_check(subject, images, result.warnings, several) for subject in subjects]  # before any work
    originals = [_load_original(image) for image in images]
    for subject, check in zip(subjects, checks):
        outcome = _render(visualizer, subject, originals, layer, target, channel, threshold, images, check)
        if out is not None:
            folder = Path(out) / subject.label if several else Path(out)
            outcome.files = _write_subject(visualizer, folder, stems, outcome, originals)
        result.subjects.append(outcome)
        result.files += outcome.files
        result.warnings += [f"{subject.label}: {w}" if several else w for w in outcome.warnings]
    if several and out is not None:
        result.files.insert(0, _comparison(visualizer, stems, result, Path(out)))
    return result


def _load_original(image) -> "np.ndarray":
    """An image file or array as (H, W) uint8 gray."""
    import numpy as np

    from txkit.datasets.base import load_gray
    from txkit.visualizers.overlay import to_uint8

    if isinstance(image, (str, Path)):
        return load_gray(image)
    array = np.asarray(image)
    if array.ndim != 2:
        raise TxkitError(f"an image array must be 2-D gray (H, W), got shape {array.shape}")
    return to_uint8(array)


def _input_check(subject, images, warnings: list, several: bool):
    """The check of the image files against what the subject's run trained on (None for a subject without a
    run's rule): a kind it cannot take is refused now, the others add one warning per kind to ``warnings``."""
    from txkit.datasets.intensity import InputCheck

    rule = getattr(subject, "intensity", None)
    if rule is None:
        return None
    label = f"{subject.label}: " if several else ""
    check = InputCheck(rule, warn=lambda message: warnings.append(f"{label}warning: {message}"))
    check.files([image for image in images if isinstance(image, (str, Path))])
    return check


def _batch(originals, size: int, images=(), rule=None, check=None):
    """The network input: image files through the run's intensity rule (``rule``, when the subject is a run),
    arrays and rule-less subjects as 8-bit grey / 255."""
    import numpy as np
    import torch

    from txkit.datasets.intensity import load_file
    from txkit.datasets.pixels import as_float, resize_gray

    files = list(images) if len(images) == len(originals) else [None] * len(originals)
    pixels = [as_float(load_file(image, size, rule, check=check))
              if rule is not None and isinstance(image, (str, Path)) else as_float(resize_gray(original, size))
              for image, original in zip(files, originals)]
    return torch.from_numpy(np.stack(pixels))[:, None]


def _render(visualizer: Visualizer, subject, originals, layer, target, channel, threshold,
            images=(), check=None) -> SubjectResult:
    """The maps of one network and its pictures at each image's resolution (nothing written)."""
    import numpy as np

    from txkit.visualizers.overlay import display_size, enlarge, jet_overlay, resize

    net = subject.net
    rule = getattr(subject, "intensity", None)
    batch = (_batch(originals, subject.image_size, images, rule, check) if originals and visualizer.uses_images
             else None)
    targets = parse_targets(target, subject.classes)
    path = _layer_for(visualizer, net, batch, layer, targets)
    maps = visualizer(net, batch, layer=layer, target=targets, channel=channel)
    extras = visualizer.extra_images(net, batch, layer, targets, channel)
    outcome = SubjectResult(subject.label, path, None, subject.image_size, maps, extras=extras, target=targets)
    if path is not None and visualizer.maps_from_layer and batch is not None:
        outcome.layer_shape, warning = _coarseness(net, batch, path, subject.image_size)
        outcome.warnings += [warning] if warning else []
    if targets is not None and not visualizer.uses_target:
        outcome.warnings.append(f"note: {visualizer.name} does not depend on --target (the map is the same for every "
                                f"class); the titles show the target's score")
    if not visualizer.aligned or batch is None:
        outcome.pictures = [{"map": enlarge(maps[0], MIN_GRID_SIDE),
                             **{k: enlarge(v[0], MIN_GRID_SIDE) for k, v in extras.items()}}]
        return outcome
    outcome.classes, outcome.scores = _scores(net, batch, targets, subject)
    outcome.heat = visualizer.heat(maps)
    side = subject.image_size
    for i, original in enumerate(originals):
        size = display_size(original.shape, MIN_DISPLAY_SIDE)
        shown = resize(original, size)
        heat = resize(np.asarray(outcome.heat[i], dtype=np.float64), size)
        pictures = {"input": shown, "map": resize(np.asarray(maps[i], dtype=np.float64), size),
                    "overlay": jet_overlay(shown, heat, threshold)}
        for suffix, extra in extras.items():
            picture = np.asarray(extra[i])
            aligned = picture.shape[:2] == (side, side)
            pictures[suffix] = resize(picture.astype(np.float64), size) if aligned else enlarge(picture, MIN_DISPLAY_SIDE)
        outcome.pictures.append(pictures)
    return outcome


def _layer_for(visualizer: Visualizer, net, batch, layer, target) -> str | None:
    """The layer the visualizer will use; when it has no default on this network, its own call says so."""
    try:
        return visualizer.layer_for(net, batch, layer, target)
    except TxkitError:
        if layer:
            raise
        return None


def _coarseness(net, batch, path: str, image_size: int) -> tuple[tuple | None, str]:
    from txkit.visualizers.base import output_shapes

    shape = output_shapes(net, batch[:1], [path]).get(path)
    if shape is None or len(shape) != 4:
        return (tuple(shape[1:]) if shape else None), ""
    h, w = shape[2:]
    if min(h, w) >= COARSE_SIDE:
        return tuple(shape[1:]), ""
    return tuple(shape[1:]), (f"warning: layer {path} is only {h}x{w} at a {image_size}x{image_size} input, so its "
                              f"maps are {h}x{w} blocks; choose a finer --layer (--list-layers shows the sizes) or "
                              f"a larger `image_size`")


def _scores(net, batch, targets, subject) -> tuple[list[str], list[float]]:
    """Per image: the target's (or top) class name and its probability (softmax; sigmoid for multi-label
    tasks and targets)."""
    import torch

    from txkit.visualizers.base import preserved, target_classes

    with preserved(net), torch.no_grad():
        logits = net(batch).float()
    if logits.dim() != 2:
        return [], []
    classes = target_classes(targets)
    sigmoid = subject.task == "multilabel" or (classes is not None and len(classes) > 1)
    probs = logits.sigmoid() if sigmoid else logits.softmax(dim=1)
    count = logits.shape[1]
    for c in classes or ():
        if not 0 <= c < count:
            raise TxkitError(f"--target {c} is out of range for {count} classes")

    def label(c: int) -> str:
        return subject.classes[c] if c < len(subject.classes) else str(c)

    names, scores = [], []
    for i in range(len(logits)):
        chosen = classes if classes is not None else [int(logits[i].argmax())]
        names.append("+".join(label(c) for c in chosen))
        scores.append(float(probs[i, chosen].prod()) if len(chosen) > 1 else float(probs[i, chosen[0]]))
    return names, scores


def parse_targets(target, classes: Sequence[str]):
    """A target (index, class name, their text, "a,b", or a list of these) as None, an index or a list."""
    if target is None:
        return None
    tokens = [target] if isinstance(target, (str, int)) or not hasattr(target, "__iter__") else list(target)
    names = []
    for token in tokens:
        if isinstance(token, str):
            names += [t.strip() for t in token.split(",") if t.strip()]
        else:
            names.append(int(token))
    if not names:
        return None
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    indices = []
    for name in names:
        if isinstance(name, int):
            indices.append(name)
        elif name.lstrip("-").isdigit():
            indices.append(int(name))
        elif name.lower() in lookup:
            indices.append(lookup[name.lower()])
        else:
            known = f"; classes are: {', '.join(classes)}" if classes else ""
            raise TxkitError(f"--target {name!r} is neither a class index nor a class name{known}")
    return indices[0] if len(indices) == 1 else indices


# --- files --------------------------------------------------------------------------------------------
def _title(visualizer: Visualizer, outcome: SubjectResult, i: int | None, what: str) -> list[str]:
    head = f"{visualizer.name} {what}".strip()
    parts = [head, f"layer {outcome.layer}" if outcome.layer else "no layer (input space)"]
    if outcome.layer_shape and len(outcome.layer_shape) == 3:
        parts[-1] += f" ({outcome.layer_shape[1]}x{outcome.layer_shape[2]})"
    if i is not None and outcome.classes:
        kind = "top class" if outcome.target is None else "target"
        parts.append(f"{kind} {outcome.classes[i]} p={outcome.scores[i]:.3f}")
    return [" · ".join(parts)]


def _write_subject(visualizer: Visualizer, folder: Path, stems: list[str], outcome: SubjectResult,
                   originals) -> list[Path]:
    from txkit.visualizers.overlay import save_png, titled

    name = visualizer.name
    warning = next((w for w in outcome.warnings if w.startswith("warning:")), "")
    written = []
    if not visualizer.aligned or not originals:
        lines = _title(visualizer, outcome, None, "") + [outcome.label]
        pictures = outcome.pictures[0]
        written.append(save_png(folder / f"{name}.png", titled(pictures["map"], lines, warning)))
        for suffix in outcome.extras:
            lines = _title(visualizer, outcome, None, suffix) + [outcome.label]
            written.append(save_png(folder / f"{name}_{suffix}.png", titled(pictures[suffix], lines, warning)))
        return written
    for i, stem in enumerate(stems):
        pictures = outcome.pictures[i]
        h, w = originals[i].shape
        about = f"{stem} · {outcome.label} · image {w}x{h} px, network input {outcome.image_size}x{outcome.image_size}"
        files = [(f"{stem}_input.png", "input", [about]),
                 (f"{stem}_{name}.png", "map", _title(visualizer, outcome, i, "") + [about]),
                 (f"{stem}_{name}_overlay.png", "overlay", _title(visualizer, outcome, i, "overlay") + [about])]
        files += [(f"{stem}_{name}_{suffix}.png", suffix, _title(visualizer, outcome, i, suffix) + [about])
                  for suffix in outcome.extras]
        for filename, key, lines in files:
            shown_warning = warning if key != "input" else ""
            written.append(save_png(folder / filename, titled(pictures[key], lines, shown_warning)))
    return written


def _comparison(visualizer: Visualizer, stems: list[str], result: VisualizationResult, out_dir: Path) -> Path:
    from txkit.visualizers.overlay import comparison_grid

    name, outcomes = visualizer.name, result.subjects
    columns = [o.label for o in outcomes]
    layers = sorted({o.layer for o in outcomes if o.layer})
    title = f"{name} · layer {', '.join(layers)}" if layers else name
    warnings = dict.fromkeys(w for o in outcomes for w in o.warnings if w.startswith("warning:"))
    title += "".join("\n" + textwrap.fill(w, max(40, 30 * len(columns) + 30)) for w in warnings)
    if not visualizer.aligned or not stems:
        rows = [(name, [o.pictures[0]["map"] for o in outcomes])]
    else:
        columns = ["input"] + columns
        rows = []
        for i, stem in enumerate(stems):
            rows.append((f"{stem}: {name}", [outcomes[0].pictures[i]["input"]] + [o.pictures[i]["map"] for o in outcomes]))
            rows.append((f"{stem}: overlay", [None] + [o.pictures[i]["overlay"] for o in outcomes]))
    return comparison_grid(out_dir / f"compare_{name}.png", columns, rows, title=title)


def unique_stems(images) -> list[str]:
    stems, seen = [], {}
    for index, image in enumerate(images):
        stem = Path(image).stem if isinstance(image, (str, Path)) else f"image{index}"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems
