"""Errors that reach the user as one line, never as a traceback.

Library messages name configuration fields in backticks (`` `batch_size` ``), so one message fits every
front end: :func:`for_cli` turns them into the flag (``--batch-size``), :func:`for_config` into the field
name as an experiment file or the Python API spells it.
"""

import re
import warnings

FIELD = re.compile(r"`([a-z][a-z0-9_]*)`")
TURN_OFF = re.compile(r"turn off `([a-z][a-z0-9_]*)`")  # a boolean field's fix; the CLI spells it --no-FIELD
CLI_FLAGS = {"data_options": "--data-option", "colorizer_options": "--colorizer-option"}


class TxkitError(Exception):
    """A problem the user can fix; its message names the file or option and the fix."""

    exit_code = 1


class UnknownNameError(TxkitError):
    """A registry lookup that found nothing (the message suggests the closest name)."""


class ConfigError(TxkitError):
    """A config value that fails its field's validation; the message names the field in backticks."""


class DataError(TxkitError):
    """A dataset that cannot be read as given."""


class WeightsError(TxkitError):
    """Weights that cannot be found, downloaded or loaded."""


class TxkitWarning(UserWarning):
    """Something about the user's input that does not stop the command (one line naming the file or option and
    what to do). The CLI prints it as ``warning: ...`` on stderr with its flags (``txkit.cli.group``); in Python it
    is an ordinary warning that ``warnings.filterwarnings`` can silence or turn into an error."""


def warn(message: str) -> None:
    """Issue ``message`` as a :class:`TxkitWarning`."""
    warnings.warn(message, TxkitWarning, stacklevel=3)


def for_cli(message: str) -> str:
    message = TURN_OFF.sub(lambda m: "pass --no-" + m.group(1).replace("_", "-"), message)
    return FIELD.sub(lambda m: CLI_FLAGS.get(m.group(1), "--" + m.group(1).replace("_", "-")), message)


def for_config(message: str) -> str:
    return FIELD.sub(lambda m: m.group(1), message)
