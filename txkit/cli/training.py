"""`txkit train`, `evaluate`, `predict` and `inspect`."""

from __future__ import annotations

import json

import click

from txkit.cli.config_options import config_from_options, config_options, field_option
from txkit.cli.options import complete_names, parse_key_values
from txkit.errors import for_cli
from txkit.config import TrainConfig



def _fmt(value) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


@click.command("train")
@config_options
@click.option("--out", type=click.Path(), help="Run directory (default runs/TIMESTAMP-DATASET-BACKBONE-STRATEGY).")
@click.option("--resume", type=click.Path(), help="Continue an interrupted run directory; other options are ignored, "
                                                  "but --skip-bad-images turns skipping on (recorded in the run).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def train_command(out, resume, as_json, **options):
    """Train a transfer-learning model. With no options: the embedded synthetic-dld set on
    efficientnet_lite0 with ImageNet weights, strategy `full`. Under torchrun (torchrun --nproc_per_node N -m
    txkit train ...) one run trains on N processes; --batch-size is then the global batch (docs/scaling.md)."""
    from txkit.cli.torchrun import launch
    from txkit.training import distributed, session

    with launch():  # under torchrun: one run on every process, one line on a failure (docs/scaling.md)
        if resume:
            run_dir, summary = session.resume(resume, skip_bad_images=options["skip_bad_images"])
        else:
            cfg = distributed.main_first(config_from_options, options)
            run_dir, summary = session.train(cfg, out, wording=for_cli)
        if as_json:
            click.echo(json.dumps({"run_dir": str(run_dir), **summary}, indent=2))
            return
        _print_summary(run_dir, summary)


def _print_summary(run_dir, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for key, title in (("test", "test metrics (best checkpoint)"),
                       ("oof", "out-of-fold metrics (the held-out fold, best checkpoint)")):
        metrics = summary.get(key)
        if metrics:
            table = Table(title=title, box=None, header_style="bold")
            for column in ("accuracy", "precision", "recall", "f1", "auc"):
                table.add_column(column, justify="right")
            table.add_row(*[_fmt(metrics[c]) for c in ("accuracy", "precision", "recall", "f1", "auc")])
            console.print(table)
    console.print(f"best val {summary['monitor']} {_fmt(summary['best_val'])} at epoch {summary['best_epoch']}; "
                  f"{summary['status']} in {summary['elapsed_s']:.1f} s")
    console.print(f"run saved to {run_dir}")


@click.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--split", default=None,
              help="The split to evaluate: train, val or test (default test; an external dataset's test split, "
                   "else all of its images; `all` for every image of an external dataset); for a run of one fold "
                   "(--folds) also oof, its held-out fold (val and train are then the fold's).")
@click.option("--bootstrap", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the confidence intervals (stratified; whole patients or studies "
                   "when the split has them); 0: no intervals.")
@click.option("--ci-level", type=float, default=0.95, show_default=True, help="Confidence level, in (0, 1).")
@click.option("--dataset", "dataset", default=None, metavar="NAME", shell_complete=complete_names("dataset"),
              help="External validation: evaluate on this dataset instead of the run's, with the run's recorded "
                   "intensity rule and image size; classes matched by name (see --class-map).")
@click.option("--data-root", type=click.Path(), help="Where the external dataset lives (folder, CSV or .npz).")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
              help="Option of the external dataset, repeatable (e.g. --data-option subgroups=sex,age); without "
                   "--dataset, added to the run's own dataset options (only ones that carry metadata).")
@click.option("--class-map", default=None, metavar="A=B,...",
              help="The external dataset's class A is the run's class B (e.g. healthy=normal,sick=pneumonia).")
@click.option("--by", "by", multiple=True, metavar="COLUMN",
              help="Per-subgroup metrics with intervals and the largest gap, by a metadata column (sex, age, "
                   "view; repeatable or comma-separated).")
@click.option("--threshold", default=None, metavar="RULE",
              help="Choose per-class thresholds on the val split (youden, f1, sensitivity=0.9, specificity=0.95, "
                   "or a fixed probability such as 0.5), store them in RUN/thresholds.json for txkit predict, and "
                   "report sensitivity, specificity, PPV and NPV at them.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics (and their intervals) as JSON.")
@click.option("--device", default="auto", show_default=True,
              help="Where the network runs: auto (the GPU when there is one, with loader workers), cpu or cuda.")
def evaluate_command(run_dir, split, bootstrap, ci_level, dataset, data_root, data_options, class_map, by,
                     threshold, as_json, device):
    """Metrics of a run's best checkpoint on a split with confidence intervals, calibration (ECE, Brier),
    and ROC-curve and reliability-diagram PNGs in the run directory; on an external dataset (--dataset), by
    subgroup (--by) and at operating points (--threshold)."""
    from txkit.run.evaluate import check_interval_options, evaluate_run

    check_interval_options(bootstrap, ci_level)
    options = parse_key_values(data_options, "--data-option")
    metrics = evaluate_run(run_dir, split, bootstrap=bootstrap, ci_level=ci_level, device=device, dataset=dataset,
                           data_root=data_root, data_options=options or None, class_map=class_map, by=list(by),
                           threshold=threshold)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    _print_evaluation(metrics)


def _with_ci(value, interval) -> str:
    """``0.9036 [0.871, 0.931]``; the value alone without an interval."""
    if interval is None:
        return _fmt(value)
    low, high = interval
    if low != low or high != high:
        return f"{_fmt(value)} [-]"
    return f"{_fmt(value)} [{low:.3f}, {high:.3f}]"


def _level(ci: dict) -> str:
    return f"{ci['level'] * 100:g} %"


def _print_evaluation(metrics: dict) -> None:
    from rich.console import Console

    console = Console()
    ci = metrics.get("ci")
    if "dataset" in metrics:
        _print_external(console, metrics)
    _print_wide(console, _evaluation_table(metrics, ci))
    if ci:
        drawn = f"; {ci['n_groups']} {ci['resampled']} drawn whole" if "n_groups" in ci else ""
        console.print(f"[{_level(ci)} CI]: {ci['method']}, {ci['n_resamples']} resamples, seed {ci['seed']}{drawn}")
    console.print(f"accuracy {_with_ci(metrics['accuracy'], ci and ci['accuracy'])}")
    if ci:
        console.print(f"macro AUC {_with_ci(metrics['auc'], ci['delong']['auc'])} ({_level(ci)} CI, DeLong)")
    if "confusion_matrix" in metrics:
        console.print("confusion matrix (rows = truth, columns = prediction):")
        for name, row in zip(metrics["classes"], metrics["confusion_matrix"]):
            console.print(f"  {name:>16} " + " ".join(f"{v:5d}" for v in row))
    if "study_level" in metrics:
        study = metrics["study_level"]
        console.print(f"image-level kappa {_fmt(metrics['kappa'])}; study-level ({study['n']} studies, mean image "
                      f"probability): accuracy {_fmt(study['accuracy'])}, AUC {_fmt(study['auc'])}, "
                      f"kappa {_fmt(study['kappa'])}")
    console.print(f"calibration: ECE {_fmt(metrics['ece'])} ({metrics['ece_bins']} bins), Brier "
                  f"{_fmt(metrics['brier'])}, NLL {_fmt(metrics['nll'])}")
    calibrated = metrics.get("calibrated")
    if calibrated:
        console.print(f"calibrated (temperature {calibrated['temperature']:.3f}, fitted on {calibrated['fitted_on']}"
                      f"{', this split: optimistic' if calibrated['fitted_on'] == metrics['split'] else ''}): "
                      f"ECE {_fmt(calibrated['ece'])}, Brier {_fmt(calibrated['brier'])}, "
                      f"NLL {_fmt(calibrated['nll'])}")
    if "operating_points" in metrics:
        _print_operating(console, metrics["operating_points"], ci)
    for analysis in metrics.get("subgroups", {}).values():
        _print_subgroups(console, analysis, metrics, bool(ci))
    console.print(f"ROC curves: {metrics['roc_png']}")
    console.print(f"reliability diagram: {metrics['reliability_png']}")


def _print_external(console, metrics: dict) -> None:
    source = metrics["dataset"]
    where = f" ({source['data_root']})" if source.get("data_root") else ""
    mapped = ", ".join(f"{a} -> {b}" for a, b in source["class_map"].items())
    console.print(f"external dataset {source['name']}{where}: {source['note']}"
                  + (f"; classes mapped {mapped}" if mapped else ""), soft_wrap=True)
    if source["absent_classes"]:
        console.print(f"classes of the run without images here: {', '.join(source['absent_classes'])} (no metrics "
                      f"for them; macro values over {', '.join(metrics['macro_over'])})", soft_wrap=True)


def _print_operating(console, points: dict, ci: dict | None) -> None:
    from rich.table import Table

    where = ("fixed" if points["fitted_on"] is None else f"chosen on the {points['fitted_on']} split")
    stored = ("read from " + points["source"]) if points["source"] != "chosen now" else f"stored in {points['path']}"
    optimistic = ", this split: optimistic" if points["fitted_on"] == points["split"] else ""
    console.print(f"operating points at the {points['rule']} thresholds ({where}{optimistic}; {stored}):",
                  soft_wrap=True)
    table = Table(box=None, header_style="bold")
    columns = ("sensitivity", "specificity", "ppv", "npv")
    for column in ("class", "threshold") + columns:
        table.add_column(column if column not in ("ppv", "npv") else column.upper(),
                         justify="left" if column == "class" else "right", no_wrap=True)
    intervals = (points.get("ci") or {}) if ci else {}
    for name, row in points["per_class"].items():
        bounds = intervals.get(name, {})
        table.add_row(name, _fmt(row["threshold"]), *[_with_ci(row[c], bounds.get(c)) for c in columns])
    _print_wide(console, table)


def _print_subgroups(console, analysis: dict, metrics: dict, with_ci: bool) -> None:
    from rich.table import Table

    column, groups = analysis["column"], analysis["subgroups"]
    binary = metrics.get("operating_points") and len(metrics["classes"]) == 2 and "confusion_matrix" in metrics
    positive = metrics["classes"][-1]
    level = f"{analysis['level'] * 100:g} % CI" if with_ci else "no intervals"
    console.print(f"by {column} ({level}, {analysis['method']}):", soft_wrap=True)
    table = Table(box=None, header_style="bold")
    headers = ["subgroup", "n"] + (["patients"] if any("n_groups" in g for g in groups.values()) else [])
    headers += ["accuracy", "AUC"] + ([f"sensitivity {positive}", f"specificity {positive}"] if binary else [])
    for header in headers:
        table.add_column(header, justify="left" if header == "subgroup" else "right", no_wrap=True)
    for name, g in groups.items():
        cells = [name + (" (too small)" if g["too_small"] else ""), str(g["n"])]
        cells += [str(g["n_groups"])] if "n_groups" in g else []
        cells += [_with_ci(g["accuracy"], g["ci"]["accuracy"] if with_ci else None),
                  _with_ci(g["auc"], g["ci"]["auc"] if with_ci else None)]
        if binary:
            ops, bounds = g["operating"][positive], g["ci"]["operating"][positive]
            cells += [_with_ci(ops[m], bounds[m] if with_ci else None) for m in ("sensitivity", "specificity")]
        table.add_row(*cells)
    _print_wide(console, table)
    shown = ["accuracy", "auc"] + ([f"sensitivity:{positive}", f"specificity:{positive}"] if binary else [])
    parts = []
    for metric in shown:
        gap = analysis["gaps"][metric]
        label = metric.replace("auc", "AUC").replace(":", " ")
        if gap["between"]:
            interval = _with_ci(gap["gap"], [gap["low"], gap["high"]] if with_ci else None)
            parts.append(f"{label} {interval} ({gap['between'][0]} - {gap['between'][1]})")
        else:
            parts.append(f"{label} - ({gap['reason']})")
    console.print(f"largest gap by {column}: " + "; ".join(parts), soft_wrap=True)


def _print_wide(console, table) -> None:
    from rich.console import Console

    Console(width=max(console.width, _natural_width(console, table))).print(table)


def _natural_width(console, table) -> int:
    """The table's width unwrapped: intervals in cells are unreadable when a narrow terminal folds them."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(max_width=1000), table).maximum


def _evaluation_table(metrics: dict, ci: dict | None):
    from rich.table import Table

    title = f"{metrics['split']} split, {metrics['n']} images"
    if "dataset" in metrics:
        title = f"external {metrics['dataset']['name']}, {title}"
    table = Table(title=title, box=None, header_style="bold")
    columns = ("precision", "recall", "f1", "auc")
    for column in ("class",) + columns + ("support",):
        table.add_column(column, justify="right" if column != "class" else "left", no_wrap=True)
    for name, row in metrics["per_class"].items():
        if row.get("absent"):
            table.add_row(name, *["-"] * len(columns), "absent")
            continue
        bounds = ci["per_class"][name] if ci else {}
        table.add_row(name, *[_with_ci(row[c], bounds.get(c)) for c in columns], str(row["support"]))
    table.add_row("[bold]macro[/bold]", *[_with_ci(metrics[c], ci and ci[c]) for c in columns], "")
    return table


@click.command("predict")
@click.argument("run_dir", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--threshold", default=None, metavar="RULE",
              help="Decide each class at these thresholds instead of the run's thresholds.json: youden, f1, "
                   "sensitivity=0.9, specificity=0.95 (chosen on the val split now, not stored) or a probability.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with every class probability.")
@click.option("--device", default="auto", show_default=True,
              help="Where the network runs: auto (the GPU when there is one, with loader workers), cpu or cuda.")
def predict_command(run_dir, images, threshold, as_json, device):
    """Classify single images with a run's best checkpoint; with calibration.json (txkit calibrate) also the
    temperature-scaled probabilities, with thresholds.json (txkit evaluate --threshold) or --threshold also the
    classes each image is positive for at the thresholds."""
    from txkit.run.predict import predict_images

    results = predict_images(run_dir, list(images), device=device, threshold=threshold)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        calibrated = f"; calibrated {r['calibrated_probability']:.3f}" if "calibrated_probability" in r else ""
        decided = ""
        if "decisions" in r:
            positive = [c for c, yes in r["decisions"].items() if yes]
            decided = f"; positive at the {r['threshold_rule']} thresholds: {', '.join(positive) or 'none'}"
        click.echo(f"{r['image']}: {r['prediction']} ({r['probability']:.3f}{calibrated}){decided}")


@click.command("inspect")
@field_option("backbone")
@field_option("colorizer")
@field_option("gray")
@field_option("strategy")
@click.option("--num-classes", type=click.IntRange(1), required=True, help="Classes of the new head.")
@field_option("freeze_colorizer")
@click.option("--json", "as_json", is_flag=True, help='JSON with "total", "trainable" and "stages".')
def inspect_command(backbone, colorizer, gray, strategy, num_classes, freeze_colorizer, as_json):
    """Total and trainable parameters, and which stages a strategy freezes."""
    from txkit.training.inspection import inspect_model

    cfg = TrainConfig.create(backbone=backbone, colorizer=colorizer, gray=gray, strategy=strategy, weights="none",
                             freeze_colorizer=freeze_colorizer)
    report = inspect_model(cfg, num_classes)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{backbone}{' + ' + colorizer if colorizer else ''}, {strategy}, {num_classes} classes",
                  box=None, header_style="bold")
    for column, justify in (("stage", "left"), ("parameters", "right"), ("state", "left")):
        table.add_column(column, justify=justify)
    for stage in report["stages"]:
        state = "[green]trainable[/green]" if stage["trainable"] else "[dim]frozen[/dim]"
        table.add_row(stage["name"], f"{stage['parameters']:,}", state)
    table.add_row("[bold]total[/bold]", f"{report['total']:,}", f"[bold]{report['trainable']:,} trainable[/bold]")
    Console().print(table)


@click.command("colorize")
@click.argument("run_dir", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(), help="Output folder (default RUN_DIR/colorized).")
@click.option("--json", "as_json", is_flag=True, help="Print the written files as JSON.")
def colorize_command(run_dir, images, out, as_json):
    """Write the 3-channel images a run's trained colorizer produces, plus input/output panels."""
    from pathlib import Path

    from txkit.visualizers.colorize import colorize_images

    written = colorize_images(run_dir, list(images), out or Path(run_dir) / "colorized")
    if as_json:
        click.echo(json.dumps(written, indent=2))
        return
    for item in written:
        click.echo(f"{item['image']}: {item['colorized']}  panel {item['panel']}")


COMMANDS = [train_command, evaluate_command, predict_command, inspect_command, colorize_command]
