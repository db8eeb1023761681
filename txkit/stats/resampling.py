"""Seeded, stratified and clustered bootstrap resampling of case indices.

scipy.stats.bootstrap cannot keep class counts fixed (stratify) nor resample patients instead of images
(cluster), so resamples are drawn here with ``numpy.random.default_rng(seed)``:

* **stratified** — the cases of each stratum (by default each class) are drawn with replacement within that
  stratum, so every resample keeps every stratum's count;
* **cluster** — with ``groups`` (patient or study ids), whole groups are drawn with replacement, within strata
  of groups (a group's stratum is its images' stratum, or, when its images differ, the set of their strata),
  and a drawn group brings all of its images.

Each resample consumes the next ``n_units`` uniforms of the generator, so the resamples depend on the seed
and the data only — never on how they are batched — and :func:`resample_indices` (index arrays, for any
metric function) and :func:`resample_weights` (multiplicities, for the vectorised metrics) describe the same
resamples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Plan:
    """How to draw one resample: ``strata`` lists the unit ids of each stratum; a unit is one case, or one
    group with ``groups``; ``unit_of`` maps each case to its unit."""

    n_cases: int
    n_units: int
    unit_of: np.ndarray
    strata: tuple[np.ndarray, ...]
    clustered: bool

    @property
    def method(self) -> str:
        if self.clustered:
            return "cluster bootstrap over groups"
        return "stratified percentile bootstrap" if len(self.strata) > 1 else "percentile bootstrap"


def _codes(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:  # one row of values per case: each distinct row is a stratum
        values = np.array([repr(np.asarray(v).ravel().tolist()) for v in values])
    return np.unique(values, return_inverse=True)[1].ravel()


def make_plan(n_cases: int, strata: np.ndarray | None = None, groups: np.ndarray | None = None) -> Plan:
    """The plan for ``n_cases`` cases, stratified by ``strata`` (one value per case; None: one stratum),
    clustered by ``groups`` (one id per case; None: every case its own unit)."""
    stratum = np.zeros(n_cases, dtype=np.int64) if strata is None else _codes(strata)
    if len(stratum) != n_cases:
        raise ValueError(f"strata has {len(stratum)} values for {n_cases} cases")
    if groups is None:
        unit_of = np.arange(n_cases)
        unit_stratum = stratum
    else:
        groups = np.asarray(groups)
        if len(groups) != n_cases:
            raise ValueError(f"groups has {len(groups)} values for {n_cases} cases")
        unit_of = np.unique(groups, return_inverse=True)[1].ravel()
        n_groups = int(unit_of.max()) + 1 if n_cases else 0
        low = np.full(n_groups, np.iinfo(np.int64).max)
        high = np.full(n_groups, -1)
        np.minimum.at(low, unit_of, stratum)
        np.maximum.at(high, unit_of, stratum)
        keys: list = low.tolist()
        for u in np.flatnonzero(low != high):  # a group whose images lie in different strata
            keys[u] = tuple(sorted(set(stratum[unit_of == u].tolist())))
        unit_stratum = _codes(np.array([str(k) for k in keys]))
    n_units = int(unit_of.max()) + 1 if n_cases else 0
    order = np.argsort(unit_stratum, kind="stable")
    bounds = np.flatnonzero(np.diff(unit_stratum[order])) + 1
    members = tuple(np.split(order, bounds)) if n_units else ()
    return Plan(n_cases, n_units, unit_of, members, groups is not None)


def _draws(plan: Plan, n_resamples: int, seed: int, block: int = 256) -> Iterator[np.ndarray]:
    """Blocks (resamples, units) of the units each resample draws, stratum after stratum.

    Each resample uses the next ``n_units`` uniforms of ``default_rng(seed)``: slot i of stratum s (size n_s)
    takes member ``floor(u_i n_s)``. Generating a block of rows at once consumes the stream exactly as row
    after row would, so the resamples do not depend on the block size."""
    rng = np.random.default_rng(seed)
    lengths = [len(m) for m in plan.strata]
    pool = np.concatenate(plan.strata) if plan.strata else np.zeros(0, dtype=np.int64)
    sizes = np.repeat(lengths, lengths).astype(np.int64)
    offsets = np.repeat(np.cumsum([0] + lengths[:-1]), lengths).astype(np.int64)
    for start in range(0, n_resamples, block):
        u = rng.random((min(block, n_resamples - start), len(pool)))
        yield pool[offsets + np.minimum((u * sizes).astype(np.int64), sizes - 1)]


def resample_indices(plan: Plan, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The case indices of each resample (with a cluster plan: every image of every drawn group)."""
    order = np.argsort(plan.unit_of, kind="stable")
    counts = np.bincount(plan.unit_of, minlength=plan.n_units)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for block in _draws(plan, n_resamples, seed):
        for units in block:
            if not plan.clustered:
                yield units
                continue
            sizes = counts[units]
            offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            yield order[np.repeat(starts[units], sizes) + offsets]


def resample_weights(plan: Plan, n_resamples: int, seed: int, chunk: int | None = None) -> Iterator[np.ndarray]:
    """The same resamples as :func:`resample_indices`, as blocks of multiplicities: float arrays of shape
    (resamples in block, cases) saying how often each case occurs in each resample."""
    if chunk is None:
        chunk = max(1, min(n_resamples, 4_000_000 // max(plan.n_cases, plan.n_units, 1)))
    u = plan.n_units
    for units in _draws(plan, n_resamples, seed, block=chunk):
        rows = np.arange(len(units))[:, None] * u
        counts = np.bincount((rows + units).ravel(), minlength=len(units) * u).reshape(len(units), u)
        yield counts.astype(np.float64)[:, plan.unit_of]


def default_strata(y_true: np.ndarray, strata) -> np.ndarray | None:
    """``strata="auto"``: the class labels when ``y_true`` is one label per case, otherwise (multilabel) none."""
    if isinstance(strata, str):
        if strata != "auto":
            raise ValueError(f"strata must be 'auto', None or one value per case, not {strata!r}")
        y_true = np.asarray(y_true)
        return y_true if y_true.ndim == 1 else None
    return strata
