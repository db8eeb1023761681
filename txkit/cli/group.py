"""The click group every txkit command group uses: library errors become one line with the CLI's flags."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import click

from txkit import __version__
from txkit.errors import TxkitError, TxkitWarning, for_cli


class TxkitGroup(click.Group):
    """A click group that turns a TxkitError into one line on stderr and a non-zero exit.

    Anything else is a bug, not a user error: it still ends in one line, plus the file that holds the
    full traceback (``TXKIT_DEBUG=1`` shows it instead). A :class:`TxkitWarning` the library issues is one
    ``warning: ...`` line on stderr, with the CLI's flags, as the training warnings are.
    """

    def invoke(self, ctx):
        with warnings.catch_warnings():
            warnings.simplefilter("always", TxkitWarning)  # the library already says each once (per kind of input)
            warnings.showwarning = _show_warning(warnings.showwarning)
            return self._invoke(ctx)

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TxkitError as exc:
            click.secho(f"Error: {for_cli(str(exc))}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the safety net at the CLI boundary
            if os.environ.get("TXKIT_DEBUG"):
                raise
            where = crash_report(exc)
            click.secho(f"Error: unexpected {type(exc).__name__}: {_first_line(exc)}; this is a txkit bug, "
                        f"please report it with the traceback in {where} (TXKIT_DEBUG=1 prints it)",
                        err=True, fg="red")
            ctx.exit(1)


def _show_warning(show):
    """``warnings.showwarning`` that prints a TxkitWarning as one yellow line and leaves the others to ``show``."""
    def shown(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TxkitWarning):
            click.secho(f"warning: {for_cli(str(message))}", err=True, fg="yellow")
        else:
            show(message, category, filename, lineno, file, line)
    return shown


def crash_report(exc: BaseException) -> str:
    """Write the traceback to a file in the user's cache folder (or the temp folder) and name it."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "txkit" / "crashes"
    for folder in (cache, Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"txkit-crash-{stamp}-{os.getpid()}.txt"
            path.write_text(f"txkit {__version__}, argv {sys.argv}\n{text}")
            return str(path)
        except OSError:
            continue
    return "(no writable folder for the report)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
