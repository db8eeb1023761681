"""Errors that reach the user as one line, never as a traceback."""


class TxkitError(Exception):
    """A problem the user can fix; its message names the file or option and the fix."""

    exit_code = 1


class UnknownNameError(TxkitError):
    """A registry lookup that found nothing (the message suggests the closest name)."""


class DataError(TxkitError):
    """A dataset that cannot be read as given."""


class WeightsError(TxkitError):
    """Weights that cannot be found, downloaded or loaded."""
