"""Printing tables: piped or redirected output keeps a table's natural width instead of folding it at
80 columns (a terminal still gets the terminal's width)."""

from __future__ import annotations


def print_table(table, console=None) -> None:
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console()
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update(max_width=1000), table).maximum
    Console(width=max(console.width, natural), file=console.file).print(table)
