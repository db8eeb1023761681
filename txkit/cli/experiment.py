"""`txkit experiment run`, `status` and `report`. Torch is imported only when runs train."""

from __future__ import annotations

import json
from pathlib import Path

import click

from txkit.cli.group import TxkitGroup


@click.group("experiment", cls=TxkitGroup)
def experiment_group():
    """Run an experiment file (stages, strategy × colorizer × backbone × seed × fraction grid) here or on Slurm,
    follow it and report it.

    The file format is described in docs/experiments.md; examples/experiments/ has one file per seed paper.
    """


@experiment_group.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Experiment directory (default experiments/NAME). Run again with the same --out to continue.")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="Runs trained at once on this machine (default 1), each in its own process with cores/N "
                   "torch threads and, when GPUs are visible, one GPU (round-robin); also with submitit-local.")
@click.option("--set", "settings", multiple=True, metavar="TABLE.FIELD=VALUE",
              help="Override a field of the file, repeatable: --set target.data_root=/data/x.npz, "
                   "--set grid.seeds=[0,1,2]. Give the same --set options to continue the experiment.")
@click.option("--executor", type=click.Choice(["local", "submitit-local", "slurm"]), default="local",
              show_default=True, help="local: here. slurm: Slurm job arrays through submitit, the command returns "
                                      "once they are submitted. submitit-local: the same jobs as subprocesses here.")
@click.option("--wait", is_flag=True, help="With --executor slurm or submitit-local: follow the jobs to the end "
                                           "and report like a local run.")
@click.option("--slurm-partition", help="Slurm partition (or partition in the file's [executor] table).")
@click.option("--slurm-account", help="Slurm account to charge.")
@click.option("--slurm-gpus-per-task", type=click.IntRange(0), help="GPUs per run.")
@click.option("--slurm-cpus-per-task", type=click.IntRange(1), help="CPU cores per run (also its torch threads).")
@click.option("--slurm-time", metavar="MINUTES|HH:MM:SS",
              help="Time limit per run; required for slurm. A run that outlives it resumes in a requeued job.")
@click.option("--slurm-array-parallelism", type=click.IntRange(1), help="Runs of one job array running at once.")
def run_command(file, out, jobs, settings, executor, wait, **slurm):
    """Train every unfinished run of FILE.toml; finished runs are never redone, failed ones are retried."""
    from txkit.experiments.runner import check_outcome, run_experiment

    options = _slurm_options(executor, jobs, slurm)
    root, counts = run_experiment(file, out, jobs or 1, overrides=_settings(settings), executor=executor,
                                  executor_options=options, wait=wait)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    follow = f"follow with: txkit experiment status {root}" if executor != "local" and not wait else \
        f"report with: txkit experiment report {root}"
    click.echo(f"{root}: {summary}; {follow}", err=True)
    check_outcome(root, counts)


def _slurm_options(executor: str, jobs: int | None, slurm: dict) -> dict:
    given = [name for name, value in slurm.items() if value is not None]
    if executor == "local" and given:
        raise click.UsageError(f"--{given[0].replace('_', '-')} applies to --executor slurm or submitit-local")
    if executor == "slurm" and jobs is not None:
        raise click.UsageError("--jobs counts runs at once on this machine; on Slurm use --slurm-array-parallelism")
    options = {name[len("slurm_"):]: value for name, value in slurm.items()}
    if options["time"] is not None:
        from txkit.experiments.spec import parse_minutes

        try:
            options["time"] = parse_minutes(options["time"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--slurm-time") from None
    return options


@experiment_group.command("status")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--log", "log_run", metavar="RUN_ID", help="Show the end of this run's log (default: the first "
                                                          "failed run's).")
@click.option("--lines", type=click.IntRange(1), default=20, show_default=True, help="Log lines shown.")
@click.option("--json", "as_json", is_flag=True, help="Print every run's status as JSON.")
def status_command(directory, log_run, lines, as_json):
    """Queued, running, done and failed runs of an experiment (local or submitted), with a failed run's log."""
    from txkit.experiments.status import experiment_status, format_table, log_tail

    status = experiment_status(directory)
    if as_json:
        click.echo(json.dumps(_plain(status), indent=2))
        return
    click.echo(format_table(status))
    rows = {row["run"]: row for row in status["runs"]}
    if log_run is not None and log_run not in rows:
        raise click.BadParameter(f"no run {log_run!r} in {status['directory']}", param_hint="--log")
    shown = rows.get(log_run) or next((row for row in status["runs"] if row["status"] == "failed"), None)
    if shown:
        tail = log_tail(shown["log"], lines)
        click.echo(f"\n--- {shown['run']}: last {len(tail)} lines of {shown['log']} ---")
        click.echo("\n".join(tail) if tail else "(the log is empty or missing)")


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
