"""Per-image metadata for subgroup analysis (``Split.metadata``): the one way datasets turn ages into bins and
empty cells into ``unknown``, so `txkit evaluate --by age` reads the same bins whatever dataset filled them.

Age bins: edges ``40,60`` give the bins ``<40`` (age < 40), ``40-59`` (40 <= age < 60) and ``>=60`` (age >= 60):
each bin holds its lower edge. Integer edges name a bin by its whole years (``40-59``); other edges by the
half-open range (``40.5-<60``). Ages may be written ``58`` or ``058Y`` (the NIH style); an empty, ``nan`` or
otherwise unreadable age is ``unknown``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from txkit.errors import DataError

AGE_BINS = "40,60"  # the default edges of every dataset's age_bins option
UNKNOWN = "unknown"
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[yY]?\s*$")


def parse_age_bins(text, where: str = "`data_options` age_bins") -> tuple[float, ...]:
    """Increasing, finite edges from ``"40,60"``; one line naming ``where`` otherwise."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        edges = tuple(float(p) for p in parts)
    except ValueError:
        edges = ()
    if not edges or not all(math.isfinite(e) and e >= 0 for e in edges) or \
            any(b <= a for a, b in zip(edges, edges[1:])):
        raise DataError(f"{where} {text!r}: give increasing ages in years separated by commas, e.g. age_bins=40,60 "
                        f"(bins <40, 40-59, >=60)")
    return edges


def age_bin_labels(edges: Sequence[float]) -> list[str]:
    """The names of the ``len(edges) + 1`` bins, lowest first."""
    whole = all(float(e).is_integer() for e in edges)
    text = [f"{e:g}" for e in edges]
    middle = [f"{a}-{int(b) - 1}" if whole else f"{a}-<{b}" for a, b in zip(text, text[1:])]
    return [f"<{text[0]}", *middle, f">={text[-1]}"]


def bin_ages(values: Sequence, edges: Sequence[float]) -> np.ndarray:
    """Each age's bin name (str array); unreadable or missing ages are ``unknown``."""
    labels = age_bin_labels(edges)
    out = []
    for value in values:
        age = _age(value)
        out.append(UNKNOWN if age is None else labels[int(np.searchsorted(edges, age, side="right"))])
    return np.asarray(out, dtype=str)


def _age(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and value >= 0 else None
    match = _AGE.match(str(value))
    return float(match.group(1)) if match else None


def subgroup_values(values: Sequence) -> np.ndarray:
    """Values as subgroup names (str array): stripped, empty ones ``unknown``."""
    return np.asarray([str(v).strip() or UNKNOWN for v in values], dtype=str)
