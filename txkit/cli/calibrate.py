"""`txkit calibrate`: temperature scaling of a finished run, fitted on its validation split."""

from __future__ import annotations

import json

import click


@click.command("calibrate")
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print calibration.json's content (and its path).")
@click.option("--device", default="auto", show_default=True,
              help="Where the network runs: auto (the GPU when there is one, with loader workers), cpu or cuda.")
def calibrate_command(run_dir, as_json, device):
    """Fit temperature scaling on the run's val split and store it as RUN_DIR/calibration.json; evaluate and
    predict then report calibrated probabilities beside the raw ones."""
    from txkit.run.calibrate import calibrate_run

    record = calibrate_run(run_dir, device=device)
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    click.echo(f"temperature {record['temperature']:.4f} fitted on the val split ({record['n']} images): "
               f"NLL {record['nll_before']:.4f} -> {record['nll_after']:.4f}, ECE ({record['ece_bins']} bins) "
               f"{record['ece_before']:.4f} -> {record['ece_after']:.4f}")
    click.echo(f"saved to {record['path']}; txkit evaluate and txkit predict now report calibrated values too")


COMMANDS = [calibrate_command]
