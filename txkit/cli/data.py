"""`txkit data info`: what a dataset holds, per split, after its label policy. Never imports torch."""

from __future__ import annotations

import json

import click

from txkit.cli.group import TxkitGroup
from txkit.cli.options import complete_names, parse_key_values


@click.group("data", cls=TxkitGroup)
def data_group():
    """Inspect datasets: `txkit data info NAME --data-root PATH`."""


@data_group.command("info")
@click.argument("name", shell_complete=complete_names("dataset"))
@click.option("--data-root", type=click.Path(), help="Where the dataset lives (folder, CSV or .npz file).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
              help="Dataset option, repeatable (e.g. --data-option policy=ones).")
@click.option("--skip-bad-images", is_flag=True,
              help="Open every image once and skip (count) unreadable ones, as `txkit train` would.")
@click.option("--sample", type=click.IntRange(0), default=32, show_default=True,
              help="Images opened for the image-size statistics (0: none).")
@click.option("--intensity-sample", type=click.IntRange(0), default=200, show_default=True,
              help="Images per split (evenly spaced) opened for the intensity statistics (0: none).")
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: {"splits": {"train": {"images", "patients", "positives"}, ...}, ...}.')
def info_command(name, data_root, data_options, skip_bad_images, sample, intensity_sample, as_json):
    """Images, patients and positive labels per split, and image sizes on a sample, for dataset NAME."""
    from txkit.datasets.info import dataset_info
    from txkit.plugins import create

    options = parse_key_values(data_options, "--data-option")
    if skip_bad_images:
        options["skip_bad_images"] = True
    report = dataset_info(create("dataset", name, root=data_root, **options), sample=sample,
                          intensity_sample=intensity_sample)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_report(report)


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{report['dataset']}[/bold] ({report['task']}, {len(report['classes'])} classes): "
                  f"{escape(report['description'])}")
    splits = report["splits"]
    table = Table(box=None, header_style="bold")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_row("[bold]images[/bold]", *(f"{s['images']:,}" for s in splits.values()))
    table.add_row("patients", *(_count(s["patients"]) for s in splits.values()))
    if any("studies" in s for s in splits.values()):
        table.add_row("studies", *(_count(s.get("studies")) for s in splits.values()))
    for cls in report["classes"]:
        table.add_row(escape(cls), *(_positives(s, cls) for s in splits.values()))
    console.print(table)
    console.print(_size_line(report["image_size"]))
    for split, stats in report.get("intensity", {}).items():
        console.print(_intensity_line(split, stats))
    for warning in report.get("warnings", []):
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    if report["info"].get("skipped_images"):
        console.print(f"[yellow]skipped {report['info']['skipped_images']} missing or unreadable image(s)[/yellow]")


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def _positives(split: dict, cls: str) -> str:
    text = f"{split['positives'][cls]:,}"
    ignored = split.get("ignored", {}).get(cls)
    return f"{text} ({ignored:,} ignored)" if ignored else text


def _size_line(stats: dict) -> str:
    from rich.markup import escape

    if not stats.get("sampled"):
        return "image size: not sampled"
    line = f"image size on {stats['sampled']} sampled image(s)"
    if "height" in stats:
        h, w = stats["height"], stats["width"]
        line += f": height {h['min']}-{h['max']} (mean {h['mean']}), width {w['min']}-{w['max']} (mean {w['mean']})"
    if stats["unreadable"]:
        line += f"; [red]{stats['unreadable']} unreadable[/red], first: {escape(stats['first_error'])}"
    return line


def _intensity_line(split: str, stats: dict) -> str:
    from rich.markup import escape

    if not stats.get("sampled"):
        return f"intensity ({split}): not sampled"
    line = f"intensity ({split}, {stats['sampled']} image(s))"
    if "unit" in stats:
        line += f": {stats['min']:g} to {stats['max']:g} {stats['unit']}"
        for key in ("modalities", "photometric"):
            if stats.get(key):
                line += "; " + ", ".join(f"{escape(k)} {v}" for k, v in stats[key].items())
    if stats["unreadable"]:
        line += f"; [red]{stats['unreadable']} unreadable[/red], first: {escape(stats['first_error'])}"
    return line


COMMANDS = [data_group]
