"""`txkit list` and `txkit plugins`."""

from __future__ import annotations

import json

import click

from txkit.cli.output import print_table
from txkit.registry import KINDS, PLURALS

_KIND_ARGS = {**{k: k for k in KINDS}, **{v: k for k, v in PLURALS.items()}}


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(sorted(_KIND_ARGS)), metavar="[KIND]")
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--json", "as_json", is_flag=True,
              help='Print a JSON list of {"kind", "name", "description", "provided_by"}; with NAME, one object '
                   'with "options": [{"name", "type", "default", "help"}].')
def list_command(kind, name, as_json):
    """List registered backbones, colorizers, datasets, strategies and visualizers.

    KIND narrows the list to one kind (singular or plural: backbone, backbones, ...). KIND NAME shows one
    entry: its description, the plugin that provides it and its options (name, type, default, help), as
    given with --data-option, --colorizer-option or in an experiment file.
    """
    from txkit.plugins import get_plugins

    plugins = get_plugins()
    if name is not None:
        _show_entry(plugins, _KIND_ARGS[kind], name, as_json)
        return
    kinds = [_KIND_ARGS[kind]] if kind else list(KINDS)
    entries = plugins.entries(kinds)
    clashes = {(k, n) for k, n, _ in plugins.conflicts()}
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("kind", "name", "description", "provided by"):
        table.add_column(column, overflow="fold")
    for e in entries:  # plugin text is escaped: a '[' in it must not be read as rich markup
        clash = " [red](name clash)[/red]" if (e.kind, e.name) in clashes else ""
        table.add_row(e.kind, escape(e.name) + clash, escape(e.description), escape(e.provided_by))
    print_table(table)


def _show_entry(plugins, kind: str, name: str, as_json: bool) -> None:
    """`txkit list KIND NAME`: one entry and its declared options."""
    from txkit.errors import TxkitError
    from txkit.plugins import CORE_DISTRIBUTION

    entry = plugins.registry(kind).get(name)  # an unknown name: the registry's did-you-mean line
    try:
        shown = entry.options_dict()
    except TxkitError:
        raise
    except Exception as exc:  # a plugin's options string that cannot be imported
        if entry.provided_by == CORE_DISTRIBUTION:
            raise
        raise TxkitError(f"{kind} {entry.name!r} of {entry.provided_by}: cannot import its options "
                         f"{entry.options!r} ({type(exc).__name__}: {exc}); reinstall or uninstall "
                         f"{entry.provided_by}") from None
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from txkit.options import default_text

    click.echo(f"{kind} {entry.name}: {entry.description}")
    click.echo(f"provided by: {entry.provided_by}")
    if kind == "backbone":
        click.echo("options: none (txkit passes num_classes and pretrained itself)")
        return
    if entry.options is None:
        click.echo("options: not declared (the factory checks what it is given)")
        return
    if not shown["options"]:
        click.echo("options: none")
        return
    click.echo("options:")
    table = Table(box=None, header_style="bold")
    for column in ("option", "type", "default", "help"):
        table.add_column(column, overflow="fold")
    for row in shown["options"]:
        default = "" if row["type"] == "pattern" else default_text(row["default"])
        table.add_row(escape(row["name"]), escape(row["type"]), escape(default), escape(row["help"]))
    print_table(table)


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of plugin distributions.")
def plugins_command(as_json):
    """Show installed plugin distributions, their versions, hooks and load errors."""
    from txkit.plugins import get_plugins

    plugins = get_plugins()
    infos = sorted(plugins.plugins.values(), key=lambda p: (p.distribution != "txkit", p.distribution))
    rows = [p.as_dict() for p in infos]
    for kind, name, sources in plugins.conflicts():
        for row in rows:
            if row["name"] in sources:
                others = ", ".join(s for s in sources if s != row["name"])
                row["errors"].append(f"{kind} {name!r} is also registered by {others}")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("plugin", "version", "hooks", "errors"):
        table.add_column(column, overflow="fold")
    for row in rows:  # plugin text is escaped: a '[' in an error message must not be read as rich markup
        errors = escape("\n".join(row["errors"]))
        table.add_row(escape(row["name"]), escape(row["version"]), escape(", ".join(row["hooks"])),
                      f"[red]{errors}[/red]" if errors else "")
    print_table(table)


COMMANDS = [list_command, plugins_command]
