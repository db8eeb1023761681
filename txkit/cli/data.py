"""`txkit data info`: what a dataset holds, per split, after its label policy (never imports torch);
`txkit data cache`: build, list and clear the decode-once image cache (txkit.data.cache)."""

from __future__ import annotations

import json

import click

from txkit.cli.group import TxkitGroup, remember_cache_dir
from txkit.cli.options import complete_names, parse_key_values
from txkit.storage import human_bytes


@click.group("data", cls=TxkitGroup)
def data_group():
    """Inspect datasets (`txkit data info NAME --data-root PATH`) and cache their images (`txkit data cache`)."""


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
@click.option("--folds", type=int, metavar="K", help="Also show the K folds `txkit train --folds K` would use: "
              "images, patients and class counts per fold of the train+val images (test is never folded).")
@click.option("--fold-seed", type=int, default=0, show_default=True, help="With --folds: the fold seed.")
@click.option("--fold-repeat", type=int, default=0, show_default=True,
              help="With --folds: which repetition of the K-fold split.")
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: {"splits": {"train": {"images", "patients", "positives"}, ...}, ...} '
                   '(and "folds" with --folds).')
def info_command(name, data_root, data_options, skip_bad_images, sample, intensity_sample, folds, fold_seed,
                 fold_repeat, as_json):
    """Images, patients and positive labels per split, and image sizes on a sample, for dataset NAME."""
    from txkit.datasets.info import dataset_info
    from txkit.plugins import create

    if folds is None and (fold_seed or fold_repeat):
        raise click.UsageError("--fold-seed and --fold-repeat go with --folds K")
    options = parse_key_values(data_options, "--data-option")
    if skip_bad_images:
        options["skip_bad_images"] = True
    dataset = create("dataset", name, root=data_root, **options)
    fold_report = None
    if folds is not None:  # checked before the images are sampled: a K the classes cannot fill fails at once
        from txkit.config import TrainConfig
        from txkit.data.splits import fold_summary

        TrainConfig.create(folds=folds, fold=0, fold_seed=fold_seed, fold_repeat=fold_repeat)
        fold_report = fold_summary(dataset, folds, fold_seed, fold_repeat)
    report = dataset_info(dataset, sample=sample, intensity_sample=intensity_sample)
    if fold_report is not None:
        report["folds"] = fold_report
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_report(report)


@data_group.command("cache")
@click.argument("name", required=False, shell_complete=complete_names("dataset"))
@click.option("--data-root", type=click.Path(), help="Where the dataset lives (folder, CSV or .npz file).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
              help="Dataset option, repeatable (e.g. --data-option policy=ones).")
@click.option("--image-size", type=click.IntRange(16), help="Square size the images are resized to, as "
              "`txkit train --image-size` (default: the dataset's, else 224).")
@click.option("--intensity", default="auto", show_default=True, metavar="RULE",
              help="Intensity rule, as `txkit train --intensity`.")
@click.option("--skip-bad-images", is_flag=True, help="Skip (count) unreadable images, as `txkit train` would.")
@click.option("--cache-dir", type=click.Path(), callback=remember_cache_dir,
              help="Cache root (default: $TXKIT_CACHE_DIR, else ~/.cache/txkit).")
@click.option("--list", "list_caches", is_flag=True, help="List the caches instead of building one.")
@click.option("--clear", is_flag=True, help="Remove caches (all, or those older than --older-than).")
@click.option("--older-than", type=click.FloatRange(0), metavar="DAYS", help="With --clear: only caches "
              "created more than DAYS days ago.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cache_command(name, data_root, data_options, image_size, intensity, skip_bad_images, cache_dir, list_caches,
                  clear, older_than, as_json):
    """Build the image cache of every split of dataset NAME ahead of training, or --list / --clear caches."""
    from txkit.data.cache import cache_root

    root = cache_root(cache_dir)
    if list_caches + clear + (name is not None) != 1:
        raise click.UsageError("give a dataset NAME to build its cache, or --list, or --clear (one of them)")
    if older_than is not None and not clear:
        raise click.UsageError("--older-than goes with --clear")
    if list_caches:
        _list_caches(root, as_json)
    elif clear:
        _clear_caches(root, older_than, as_json)
    else:
        options = parse_key_values(data_options, "--data-option")
        if skip_bad_images:
            options["skip_bad_images"] = True
        _build_caches(name, data_root, options, image_size, intensity, cache_dir, as_json)


def _build_caches(name, data_root, options, image_size, intensity, cache_dir, as_json) -> None:
    from rich.table import Table

    from txkit.data.cache import CacheFolderError, CacheSettings, open_images
    from txkit.cli.output import print_table
    from txkit.datasets.intensity import IntensityRule
    from txkit.errors import DataError
    from txkit.plugins import create

    dataset = create("dataset", name, root=data_root, **options)
    dataset.check_labels()
    dataset.check_splits()
    size = int(image_size or dataset.info.get("image_size") or 224)
    fitted_on = dataset.splits["train"] if "train" in dataset.splits else next(iter(dataset.splits.values()))
    rule = IntensityRule.parse(intensity).fit(fitted_on)
    settings = CacheSettings(enabled=True, directory=cache_dir)
    rows = []
    for split_name, split in dataset.splits.items():
        try:
            store = open_images(split, size, rule, settings, label=f"{dataset.name} {split_name}")
        except CacheFolderError as exc:  # this command builds the cache: turning it off is no fix here
            raise DataError(exc.message(off_switch=False)) from None
        rows.append({"split": split_name, "images": len(split), "status": store.status if store else "in memory",
                     "key": store.header["key"] if store else None,
                     "bytes": store.header["bytes"] if store else 0})
    if as_json:
        click.echo(json.dumps({"dataset": dataset.name, "image_size": size, "intensity": rule.key,
                               "root": str(settings.root), "splits": rows}, indent=2))
        return
    table = Table(box=None, header_style="bold", title=f"{dataset.name} at {size} px, intensity {rule.key}")
    for column in ("split", "images", "cache", "key", "size"):
        table.add_column(column, justify="right" if column in ("images", "size") else "left")
    for row in rows:
        table.add_row(row["split"], f"{row['images']:,}", row["status"], (row["key"] or "-")[:12],
                      human_bytes(row["bytes"]) if row["key"] else "-")
    print_table(table)
    if any(row["key"] is None for row in rows):
        click.echo("splits without image files (in-memory datasets) are not cached on disk; they need no decoding")
    click.echo(f"cache: {settings.root / 'images'}")


def _list_caches(root, as_json: bool) -> None:
    from rich.table import Table

    from txkit.data.cache import list_caches
    from txkit.cli.output import print_table

    headers = list_caches(root)
    if as_json:
        click.echo(json.dumps({"root": str(root), "caches": headers}, indent=2))
        return
    if not headers:
        click.echo(f"no image caches in {root / 'images'}")
        return
    table = Table(box=None, header_style="bold")
    for column in ("key", "dataset", "size", "images", "dtype", "bytes", "created"):
        table.add_column(column, justify="right" if column in ("size", "images", "bytes") else "left")
    for h in headers:
        table.add_row(h["key"][:12], h.get("label") or "-", f"{h['size']} px", f"{h['images']:,}", h["dtype"],
                      human_bytes(h["bytes"]), h.get("created", "-"))
    print_table(table)
    click.echo(f"{len(headers)} cache(s), {human_bytes(sum(h['bytes'] for h in headers))} in {root / 'images'}")


def _clear_caches(root, older_than, as_json: bool) -> None:
    from txkit.data.cache import clear_caches

    removed, freed = clear_caches(root, older_than)
    if as_json:
        click.echo(json.dumps({"root": str(root), "removed": removed, "bytes_freed": freed}))
        return
    age = f" older than {older_than:g} day(s)" if older_than is not None else ""
    click.echo(f"removed {removed} image cache(s){age} ({human_bytes(freed)}) from {root / 'images'}")


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
    columns = list(dict.fromkeys(c for s in splits.values() for c in s.get("metadata", {})))
    for column in columns:
        values = list(dict.fromkeys(v for s in splits.values() for v in s.get("metadata", {}).get(column, {})))
        for value in values:
            table.add_row(escape(f"{column} = {value}"),
                          *(_count(s.get("metadata", {}).get(column, {}).get(value, 0)) for s in splits.values()))
    console.print(table)
    console.print(_size_line(report["image_size"]))
    for split, stats in report.get("intensity", {}).items():
        console.print(_intensity_line(split, stats))
    for warning in report.get("warnings", []):
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    if report["info"].get("skipped_images"):
        console.print(f"[yellow]skipped {report['info']['skipped_images']} missing or unreadable image(s)[/yellow]")
    if report.get("folds"):
        print_folds(console, report["folds"], report["classes"], report["splits"].get("test"))


def print_folds(console, folds: dict, classes: list[str], test: dict | None) -> None:
    """The K folds as columns (and the untouched test split beside them): images, patients, class counts."""
    from rich.markup import escape
    from rich.table import Table

    from txkit.data.splits import FOLD_VAL_SHARE

    k, rows = folds["folds"], folds["per_fold"]
    units = "patient" if folds["grouped_by"] == "patient" else "image (no patient ids: each image its own group)"
    title = (f"{k} folds of {'+'.join(folds['pool'])} ({folds['pool_images']:,} images), grouped by {units}, "
             f"fold seed {folds['fold_seed']}, repeat {folds['repeat']}")
    console.print(title)  # a line of its own: a table title would wrap at the table's width
    table = Table(box=None, header_style="bold")
    table.add_column("class")
    for row in rows:
        table.add_column(f"fold {row['fold']}", justify="right")
    columns = [*rows, test] if test else rows  # the test split, when there is one, beside the folds
    if test:
        table.add_column("test (not folded)", justify="right")
    table.add_row("[bold]images[/bold]", *(f"{c['images']:,}" for c in columns))
    grouped = folds["grouped_by"] == "patient"  # else the folds' "patients" are single images: not shown
    table.add_row("patients", *(_count(c["patients"] if grouped or c is test else None) for c in columns))
    for cls in classes:
        table.add_row(escape(cls), *(f"{c['positives'][cls]:,}" for c in columns))
    console.print(table)
    console.print(f"assignment sha256 {folds['assignment_sha256'][:16]}; a run of fold I trains on the other "
                  f"{k - 1} folds less a {FOLD_VAL_SHARE * 100:g} % validation slice of their patients")


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
