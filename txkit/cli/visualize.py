"""`txkit visualize`: maps, overlays and comparison grids for runs or backbones. Torch loads inside."""

from __future__ import annotations

import click

from txkit.cli.options import name_option
from txkit.errors import for_cli


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
@click.option("--visualizer-option", "visualizer_options", multiple=True, metavar="KEY=VALUE",
              help="Option of the visualizer (`txkit list visualizer NAME` shows them), e.g. top_k=8; repeatable.")
@click.option("--list-layers", "list_layers_flag", is_flag=True, help="Print the layer names to choose --layer from, and exit.")
def visualize_command(run_dirs, backbone, weights, num_classes, method, images, layer, targets, channel, out,
                      threshold, image_size, visualizer_options, list_layers_flag):
    """Write PNGs (input, map, overlay) of a visualizer for each --image.

    Give one or more finished RUN_DIRs, or --backbone with --weights. Several RUN_DIRs also give one
    comparison grid (compare_METHOD.png) with a column per run. Each PNG is at the image's resolution (at
    least 224 px) with the method, layer, class and score in its title. Report visualizers such as
    frequency-response write their own CSV/PNG; they and filters take no --image.
    """
    from txkit.cli.options import parse_key_values
    from txkit.visualizers.pipeline import list_layers, load_subjects, visualize

    options = parse_key_values(visualizer_options, "--visualizer-option")

    subjects = load_subjects(run_dirs, backbone, weights, num_classes, image_size)
    if list_layers_flag:
        for subject in subjects:
            print_layers(subject, list_layers(subject))
        return
    result = visualize(subjects, method, images, layer=layer, target=targets, channel=channel, out=out,
                       threshold=threshold, image_size=image_size, options=options)
    for warning in result.warnings:
        click.echo(for_cli(warning), err=True)
    for path in result.files:
        click.echo(str(path))


def print_layers(subject, rows) -> None:
    chosen = next((row.path for row in rows if row.default), "-")
    click.echo(f"# {subject.label}: input {subject.image_size}x{subject.image_size}, default layer {chosen}")
    click.echo(f"{'layer':<48} {'type':<24} {'output':<22} stage")
    for row in rows:
        shape = "x".join(map(str, row.shape)) if row.shape else "-"
        mark = "  <- default" if row.default else ""
        click.echo(f"{row.path:<48} {row.type:<24} {shape:<22} {row.stage}{mark}")


COMMANDS = [visualize_command]
