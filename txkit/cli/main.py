"""The ``txkit`` command. Torch is imported only inside commands that build models."""

from __future__ import annotations

import sys

import click

from txkit import __version__
from txkit.cli.group import TxkitGroup


@click.group(cls=TxkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="txkit")
def cli():
    """txkit: transfer learning for grayscale medical images.

    Backbones, colorizers, datasets, strategies and visualizers come from plugins;
    `txkit list` shows what is installed. Shell completion for bash:
    eval "$(_TXKIT_COMPLETE=bash_source txkit)" (zsh: zsh_source, fish: fish_source).
    """


_built = False


def build_cli() -> click.Group:
    """The command group with the built-in commands and those plugins add (done once per process)."""
    global _built
    if not _built:
        from txkit.cli import calibrate, data, experiment, export, listing, training, visualize

        for module in (listing, training, calibrate, data, visualize, experiment, export):
            for command in module.COMMANDS:
                cli.add_command(command)
        _add_plugin_commands()
        _built = True
    return cli


def _add_plugin_commands() -> None:
    from txkit.plugins import get_plugins

    plugins = get_plugins()
    for impl, info in plugins.command_hooks():
        plugins.call_guarded(impl, info, cli=cli)


def main(argv: list[str] | None = None) -> None:
    try:
        build_cli().main(args=argv, prog_name="txkit")
    except KeyboardInterrupt:
        click.secho("Interrupted.", err=True, fg="yellow")
        sys.exit(130)

