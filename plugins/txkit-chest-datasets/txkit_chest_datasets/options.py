"""Dataset options arrive as strings from ``--data-option key=value``: convert and check them here."""

from __future__ import annotations

import re

from txkit.errors import DataError


def reject_unknown(dataset: str, unknown: dict, valid: tuple[str, ...]) -> None:
    if unknown:
        raise DataError(f"{dataset}: unknown option(s) {', '.join(sorted(unknown))}; valid: {', '.join(valid)}")


def as_int(dataset: str, key: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{dataset}: option {key}={value!r} must be an integer") from None


def as_fraction(dataset: str, key: str, value, low: float = 0.0, high: float = 1.0, open_low: bool = False,
                open_high: bool = True) -> float:
    """A float in [low, high) by default; the bounds' openness is configurable."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    above = number > low if open_low else number >= low
    below = number < high if open_high else number <= high
    if not (above and below):
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise DataError(f"{dataset}: option {key}={value!r} must be a number in {interval}")
    return number


def as_choice(dataset: str, key: str, value, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise DataError(f"{dataset}: option {key}={value!r} must be one of {', '.join(choices)}")
    return text


def squash(name: str) -> str:
    """Compare names ignoring case, spaces, underscores and dashes (``pleural_effusion`` = ``Pleural Effusion``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def as_names(dataset: str, key: str, value: str, known: list[str]) -> list[str]:
    """A comma-separated list of names from ``known``, in the order given."""
    by_squash = {squash(name): name for name in known}
    names = []
    for part in (p.strip() for p in str(value).split(",")):
        if squash(part) not in by_squash:
            raise DataError(f"{dataset}: option {key}: unknown name {part!r}; choose from {', '.join(known)}")
        names.append(by_squash[squash(part)])
    return names
