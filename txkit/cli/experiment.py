"""`txkit experiment run` and `txkit experiment report`. Torch is imported only when runs train."""

from __future__ import annotations

import json
from pathlib import Path

import click

from txkit.cli.group import TxkitGroup


@click.group("experiment", cls=TxkitGroup)
def experiment_group():
    """Run an experiment file (stages, strategy × colorizer × backbone × seed × fraction grid) and report it.

    The file format is described in docs/experiments.md; examples/experiments/ has one file per seed paper.
    """


@experiment_group.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Experiment directory (default experiments/NAME). Run again with the same --out to continue.")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Runs trained at once, each in its own process with cores/N torch threads.")
@click.option("--set", "settings", multiple=True, metavar="TABLE.FIELD=VALUE",
              help="Override a field of the file, repeatable: --set target.data_root=/data/x.npz, "
                   "--set grid.seeds=[0,1,2]. Give the same --set options to continue the experiment.")
def run_command(file, out, jobs, settings):
    """Train every unfinished run of FILE.toml; finished runs are never redone, failed ones are retried."""
    from txkit.experiments.runner import check_outcome, run_experiment

    root, counts = run_experiment(file, out, jobs, overrides=_settings(settings))
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(f"{root}: {summary}; report with: txkit experiment report {root}", err=True)
    check_outcome(root, counts)


@experiment_group.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def report_command(directory, as_json):
    """Tables (CSV, Markdown), Wilcoxon tests, robustness slopes and plots in DIRECTORY/report/."""
    from txkit.experiments.report import REPORT_DIR, build_report

    report = build_report(directory)
    if as_json:
        click.echo(json.dumps(_plain(report), indent=2))
        return
    out = Path(report["directory"]) / REPORT_DIR
    click.echo((out / "results.md").read_text().rstrip())
    click.echo(f"\nwritten to {out}/", err=True)


def _settings(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected TABLE.FIELD=VALUE, got {pair!r}", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


def _plain(value):
    """NaN becomes null so the output is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


COMMANDS = [experiment_group]
