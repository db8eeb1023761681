"""The CLI's frame for a command under torchrun: other processes print nothing, a failure is one line and ends
this process at once (torchrun then stops the others), and the process group is left at the end."""

from __future__ import annotations

import contextlib
import os
import sys

import torch.distributed as dist

from txkit.cli.group import crash_report, error_text, machine_fault
from txkit.errors import TxkitError, for_cli
from txkit.training.distributed import Agreed, ensure_init, first_line, is_main, launched, rank, shutdown


@contextlib.contextmanager
def launch():
    """The CLI's frame for a command under torchrun: other processes print nothing, a failure is one line
    and ends this process at once (torchrun then stops the others), and the group is left at the end."""
    if not launched():
        yield
        return
    real_stderr = _silence_others()
    try:
        ensure_init()
        yield
    except BaseException as exc:  # noqa: BLE001 - every way out of a process under torchrun
        line, code = _failure_line(exc)
        if line:
            prefix = "" if is_main() else f"[process {rank()}] "
            real_stderr.write(_red(f"Error: {prefix}{line}", real_stderr) + "\n")
            real_stderr.flush()
        _exit(code)
    shutdown()


def _silence_others():
    real = sys.stderr
    if int(os.environ.get("RANK", "0")) != 0:
        real = os.fdopen(os.dup(2), "w")
        devnull = open(os.devnull, "w")
        sys.stdout = sys.stderr = devnull
    return real


def _failure_line(exc: BaseException) -> tuple[str | None, int]:
    """What this process says about ``exc`` (None: nothing, process 0 says it) and its exit code."""
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else 1
        return None, code
    if isinstance(exc, Agreed):
        return (for_cli(str(exc)) if is_main() else None), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ("Interrupted." if is_main() else None), 130
    if isinstance(exc, TxkitError):
        if exc.exit_code == 130 and not is_main():  # an interrupted run: process 0 says how to resume
            return None, 130
        return for_cli(error_text(exc)), exc.exit_code
    if _peer_failure(exc):
        return "stopped: another process of this run failed or stopped answering (its error is above)", 1
    if os.environ.get("TXKIT_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    fault = machine_fault(exc)
    if fault is not None:
        return for_cli(fault), 1
    return (f"unexpected {type(exc).__name__}: {first_line(exc)}; this is a txkit bug, please report it with the "
            f"traceback in {crash_report(exc)} (TXKIT_DEBUG=1 prints it)"), 1


def _peer_failure(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, getattr(dist, "DistError", ())) or (
        isinstance(exc, RuntimeError) and any(s in text for s in ("Connection closed by peer", "Connection reset",
                                                                   "gloo", "NCCL", "Timed out")))


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _red(text: str, stream) -> str:
    return f"\x1b[31m{text}\x1b[0m" if getattr(stream, "isatty", lambda: False)() else text
