"""`txkit visualize`: maps, overlays and comparison grids for runs or backbones. Torch loads inside."""

from __future__ import annotations

from pathlib import Path

import click

from txkit.cli.options import name_option
from txkit.errors import TxkitError


@click.command("visualize")
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False), metavar="[RUN_DIR]...")
@name_option("--backbone", kind="backbone", help="Visualize this backbone instead of a run (with --weights).")
@click.option("--weights", default="imagenet", show_default=True,
              help="With --backbone: imagenet (keeps the 1000-class ImageNet head), none, a file or a run directory.")
@click.option("--num-classes", type=click.IntRange(1),
              help="With --backbone: classes of the head (default 1000 for imagenet, else 2; a new head is untrained).")
@name_option("--method", "-m", kind="visualizer", help="Registered visualizer (`txkit list visualizers`).")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
              help="Image file (any size, converted to gray); repeatable.")
@click.option("--layer", help="Module path, backbone-relative path or stage name; default: the last conv stage.")
@click.option("--target", "targets", multiple=True,
              help="Class index or class name; several (repeated or a,b) make one multi-label target.")
@click.option("--channel", help="Channel of the layer: an index or 'top' (each image's strongest).")
@click.option("--out", default="visualizations", show_default=True, type=click.Path(file_okay=False),
              help="Output directory.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Overlay: heat at or below this is transparent.")
@click.option("--image-size", type=click.IntRange(16),
              help="Resize images to this square size (default: the run's size, or the backbone's native size).")
@click.option("--list-layers", is_flag=True, help="Print the layer names to choose --layer from, and exit.")
def visualize_command(run_dirs, backbone, weights, num_classes, method, images, layer, targets, channel, out,
                      threshold, image_size, list_layers):
    """Write PNGs (input, map, overlay) of a visualizer for each --image.

    Give one or more finished RUN_DIRs, or --backbone with --weights. Several RUN_DIRs also give one
    comparison grid (compare_METHOD.png) with a column per run. Report visualizers such as
    frequency-response write their own CSV/PNG and need no --image.
    """
    subjects = load_subjects(run_dirs, backbone, weights, num_classes, image_size)
    if list_layers:
        for subject in subjects:
            print_layers(subject)
        return
    if not method:
        raise TxkitError("--method is required (`txkit list visualizers` shows them)")
    from txkit.plugins import create

    visualizer = create("visualizer", method)
    out_dir = Path(out)
    if hasattr(visualizer, "write"):
        written = visualizer.write([(s.label, s.net) for s in subjects], out_dir, layer=layer, image_size=image_size)
    else:
        written = write_maps(visualizer, subjects, images, layer, targets, channel, out_dir, threshold)
    for path in written:
        click.echo(str(path))


def load_subjects(run_dirs, backbone, weights, num_classes, image_size):
    from txkit.visualizers.models import subject_from_run, subject_from_weights

    if run_dirs and backbone:
        raise TxkitError("give RUN_DIRs or --backbone, not both")
    if not run_dirs and not backbone:
        raise TxkitError("give one or more RUN_DIRs, or --backbone B --weights W")
    if backbone:
        return [subject_from_weights(backbone, weights, num_classes, image_size)]
    subjects = [subject_from_run(run) for run in run_dirs]
    for subject in subjects:
        subject.image_size = image_size or subject.image_size
    seen: dict[str, int] = {}
    for subject in subjects:
        seen[subject.label] = seen.get(subject.label, 0) + 1
        if seen[subject.label] > 1:
            subject.label = f"{subject.label}-{seen[subject.label]}"
    return subjects


def print_layers(subject) -> None:
    import torch

    from txkit.visualizers.base import default_layer, output_shapes, stages_of

    example = torch.zeros(1, 1, subject.image_size, subject.image_size)
    shapes = output_shapes(subject.net, example)
    stage_of = {path: name for name, paths in stages_of(subject.net) for path in paths}
    chosen = default_layer(subject.net, example)
    click.echo(f"# {subject.label}: input {subject.image_size}x{subject.image_size}, default layer {chosen}")
    click.echo(f"{'layer':<48} {'type':<24} {'output':<22} stage")
    for path, module in subject.net.named_modules():
        if not path:
            continue
        stage = next((name for prefix, name in stage_of.items() if path == prefix or path.startswith(prefix + ".")), "")
        shape = "x".join(map(str, shapes[path][1:])) if path in shapes else "-"
        mark = "  <- default" if path == chosen else ""
        click.echo(f"{path:<48} {type(module).__name__:<24} {shape:<22} {stage}{mark}")


def parse_targets(tokens, classes: list[str]):
    """--target values to None, a class index, or a list of them (multi-label)."""
    names = [t.strip() for token in tokens for t in token.split(",") if t.strip()]
    if not names:
        return None
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    indices = []
    for name in names:
        if name.lstrip("-").isdigit():
            indices.append(int(name))
        elif name.lower() in lookup:
            indices.append(lookup[name.lower()])
        else:
            known = f"; classes are: {', '.join(classes)}" if classes else ""
            raise TxkitError(f"--target {name!r} is neither a class index nor a class name{known}")
    return indices[0] if len(indices) == 1 else indices


def load_batch(paths, size: int):
    import numpy as np
    import torch

    from txkit.datasets.base import load_gray
    from txkit.training.data import resize_gray

    pixels = np.stack([resize_gray(load_gray(p), size) for p in paths])
    return torch.from_numpy(pixels).float().div(255.0)[:, None]


def write_maps(visualizer, subjects, images, layer, targets, channel, out_dir: Path, threshold: float) -> list[Path]:
    from txkit.visualizers.base import parse_channel

    aligned = getattr(visualizer, "aligned", True)
    if aligned and not images:
        raise TxkitError(f"{visualizer.name} needs at least one --image")
    channel = parse_channel(channel)
    stems = unique_stems(images)
    results, written = [], []
    for subject in subjects:
        folder = out_dir / subject.label if len(subjects) > 1 else out_dir
        batch = load_batch(images, subject.image_size) if images else None
        target = parse_targets(targets, subject.classes)
        results.append(render(visualizer, subject.net, batch, layer, target, channel, threshold))
        written += write_subject(visualizer.name, folder, stems, results[-1], aligned)
    if len(subjects) > 1:
        written.insert(0, comparison(visualizer.name, subjects, stems, results, aligned, out_dir))
    return written


def render(visualizer, net, batch, layer, target, channel, threshold) -> dict:
    """The pictures of one network: input, map, overlay and extras, as numpy arrays per image."""
    import numpy as np

    from txkit.visualizers.overlay import jet_overlay

    maps = visualizer(net, batch, layer=layer, target=target, channel=channel)
    extras = visualizer.extra_images(net, batch, layer, target, channel) if hasattr(visualizer, "extra_images") else {}
    if batch is None or not getattr(visualizer, "aligned", True):
        return {"maps": maps, "extras": extras}
    gray = batch[:, 0].numpy()
    heat = visualizer.heat(maps) if hasattr(visualizer, "heat") else maps
    overlays = np.stack([jet_overlay(g, h, threshold) for g, h in zip(gray, heat)])
    return {"inputs": gray, "maps": maps, "overlays": overlays, "extras": extras}


def write_subject(method: str, folder: Path, stems: list[str], result: dict, aligned: bool) -> list[Path]:
    from txkit.visualizers.overlay import enlarge, save_png

    written = []
    if not aligned:
        written.append(save_png(folder / f"{method}.png", enlarge(result["maps"][0])))
        for suffix, pictures in result["extras"].items():
            written.append(save_png(folder / f"{method}_{suffix}.png", enlarge(pictures[0])))
        return written
    for i, stem in enumerate(stems):
        written.append(save_png(folder / f"{stem}_input.png", result["inputs"][i]))
        written.append(save_png(folder / f"{stem}_{method}.png", result["maps"][i]))
        written.append(save_png(folder / f"{stem}_{method}_overlay.png", result["overlays"][i]))
        for suffix, pictures in result["extras"].items():
            written.append(save_png(folder / f"{stem}_{method}_{suffix}.png", enlarge(pictures[i])))
    return written


def comparison(method: str, subjects, stems: list[str], results: list[dict], aligned: bool, out_dir: Path) -> Path:
    from txkit.visualizers.overlay import comparison_grid

    columns = [s.label for s in subjects]
    if not aligned:
        rows = [(method, [r["maps"][0] for r in results])]
    else:
        columns = ["input"] + columns
        rows = []
        for i, stem in enumerate(stems):
            rows.append((f"{stem}: {method}", [results[0]["inputs"][i]] + [r["maps"][i] for r in results]))
            rows.append((f"{stem}: overlay", [None] + [r["overlays"][i] for r in results]))
    return comparison_grid(out_dir / f"compare_{method}.png", columns, rows)


def unique_stems(paths) -> list[str]:
    stems, seen = [], {}
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


COMMANDS = [visualize_command]
