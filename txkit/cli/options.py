"""Option helpers shared by commands: completion of registered names and ``key=value`` parsing."""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

from txkit.errors import TxkitError


def complete_names(kind: str):
    def complete(ctx, param, incomplete):
        from txkit.plugins import registry

        reg = registry(kind)
        return [CompletionItem(name, help=reg.entries[name].description)
                for name in reg.names() if name.startswith(incomplete)]
    return complete


def parse_key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TxkitError(f"{option} expects key=value, got {pair!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def name_option(*decls, kind: str, **kwargs):
    return click.option(*decls, shell_complete=complete_names(kind), **kwargs)
