"""`txkit export`: a finished run's network as ONNX or TorchScript with its input contract. Torch loads inside."""

from __future__ import annotations

import json

import click

from txkit.errors import for_cli


@click.command("export")
@click.argument("run_dir", type=click.Path())
@click.option("--format", "format_", default="onnx", show_default=True, metavar="onnx|torchscript",
              help="onnx (needs pip install 'txkit[export]') or torchscript.")
@click.option("--out", type=click.Path(), help="Output file or folder (default RUN_DIR/export/model.onnx or model.pt); "
                                               "the contract goes beside it as FILE.json.")
@click.option("--no-verify", "no_verify", is_flag=True,
              help="Skip running the exported model against PyTorch on the run's test images.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written, the contract and the verification "
                                                       "as JSON.")
def export_command(run_dir, format_, out, no_verify, as_json):
    """Export a finished run's best checkpoint as ONNX or TorchScript, with its input contract (image size,
    1 grayscale channel in [0, 1] after the run's intensity rule, classes, task) inside the file and in a JSON
    sidecar. The exported model is first checked against PyTorch on the run's test images (logits within
    1e-4); a model that fails is not written."""
    from rich.console import Console

    from txkit.run.export import export_run, verification_line

    result = export_run(run_dir, format_, out=out, verify=not no_verify)
    errors = Console(stderr=True)
    for warning in result["warnings"]:
        errors.print(f"warning: {for_cli(warning)}", style="yellow", markup=False, highlight=False)
    if as_json:
        click.echo(json.dumps({k: str(v) if k in ("path", "sidecar") else v for k, v in result.items()}, indent=2))
        return
    contract = result["contract"]
    size, task, classes = contract["input"]["image_size"], contract["task"], contract["classes"]
    intensity = contract["intensity"]
    per_kind = ", ".join(f"{kind}: {how}" for kind, how in (intensity.get("resolved") or {}).items())
    values = "in [0, 1]" if contract["input"]["range"] else "in Hounsfield units"
    probabilities = "softmax" if task == "multiclass" else "sigmoid per class"
    lines = [f"wrote {result['path']} ({result['format']}, {result['bytes'] / 1e6:.1f} MB) and its contract "
             f"{result['sidecar']}",
             f"input: (N, 1, {size}, {size}) float32, one grayscale channel {values} after intensity rule "
             f"{intensity['rule']}{f' ({per_kind})' if per_kind else ''}",
             f"output: (N, {len(classes)}) logits, {task} ({probabilities}): {', '.join(classes)}",
             verification_line(result["verification"]) if result["verification"] else "not verified (--no-verify)"]
    console = Console(soft_wrap=True)  # paths and numbers stay on one line when the output is piped
    for line in lines:
        console.print(line, markup=False, highlight=False)

COMMANDS = [export_command]
