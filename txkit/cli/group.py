"""The click group every txkit command group uses: library errors become one line with the CLI's flags."""

from __future__ import annotations

import errno
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
            click.secho(f"Error: {for_cli(error_text(exc))}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the safety net at the CLI boundary
            if os.environ.get("TXKIT_DEBUG"):
                raise
            fault = machine_fault(exc)
            if fault is not None:
                click.secho(f"Error: {for_cli(fault)}", err=True, fg="red")
                ctx.exit(1)
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


def error_text(exc: TxkitError) -> str:
    """A TxkitError's one line. One raised in a DataLoader worker arrives re-raised in this process with the
    worker's traceback in its message ("Caught DataError in DataLoader worker process 0. Original Traceback
    ..."): its own message is the traceback's last line."""
    text = str(exc)
    if "\nOriginal Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    name = f"{type(exc).__name__}: "
    return last.partition(name)[2] if name in last else last


# What the machine (a disk, a path, the memory) did, not txkit: the fix the user can make, by errno.
OS_FIXES = {
    errno.ENOSPC: "no space left on its device; free space there",
    errno.EDQUOT: "the disk quota is used up; free space there",
    errno.EACCES: "permission denied; make it accessible or choose another path",
    errno.EPERM: "operation not permitted; make it accessible or choose another path",
    errno.EROFS: "on a read-only file system; choose a path on a writable one",
    errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or use fewer `num_workers`",
    errno.ENFILE: "too many open files on this machine; close other programs or use fewer `num_workers`",
    errno.EIO: "input/output error; check the disk or network file system it is on",
}


def machine_fault(exc: BaseException) -> str | None:
    """One line for a failure the machine caused, not txkit: a disk or path that refuses (by errno, naming the
    file), memory exhausted, a loader worker killed. None for anything else (a bug: the crash report)."""
    if isinstance(exc, OSError) and exc.errno in OS_FIXES:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc} ({OS_FIXES[exc.errno]})"
    if "torch" in sys.modules:  # without torch loaded there is no loader or torch allocator to have failed
        from txkit.data.loader import worker_failure
        from txkit.training.runtime import out_of_memory

        worker = worker_failure(exc)
        if worker is not None:
            return worker
        memory = out_of_memory(exc)
        if memory is not None:
            return f"{memory}; close other programs, or use a smaller `batch_size` or `image_size`"
    if isinstance(exc, MemoryError):
        return f"out of memory ({_first_line(exc)}); close other programs or work on smaller inputs"
    return None


CACHE_DIR = "txkit.cache_dir"  # ctx.meta key: the --cache-dir the command was given (meta is shared by subcommands)


def remember_cache_dir(ctx: click.Context, param, value):
    """The callback of every --cache-dir option: the crash report goes where the user keeps txkit's files."""
    if value:
        ctx.meta[CACHE_DIR] = value
    return value


def crash_report(exc: BaseException) -> str:
    """Write the traceback to a file under the cache folder (--cache-dir, else $TXKIT_CACHE_DIR, else
    ~/.cache/txkit; the temp folder when that cannot be written) and name it."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in _crash_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"txkit-crash-{stamp}-{os.getpid()}.txt"
            path.write_text(f"txkit {__version__}, argv {sys.argv}\n{text}")
            return str(path)
        except OSError:
            continue
    return "(no writable folder for the report)"


def _crash_folders() -> list[Path]:
    ctx = click.get_current_context(silent=True)
    try:
        from txkit.data.cache import cache_root

        return [cache_root(ctx.meta.get(CACHE_DIR) if ctx is not None else None) / "crashes",
                Path(tempfile.gettempdir())]
    except Exception:  # noqa: BLE001 - a report must be written even where txkit's own modules do not import
        return [Path(tempfile.gettempdir())]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
