"""The cross-validation part of an experiment report (a grid with ``[grid] folds = K``).

A cell's runs are its folds (x repeats x seeds). A *replicate* is one (seed, repeat) of a cell: its K runs
predicted every pooled image exactly once (their ``predictions_oof.npz``), so a replicate is complete when all
K folds finished and their out-of-fold ids are the pool without a repeat. Per cell:

- **pooled out-of-fold metrics**: the metrics of the concatenated out-of-fold predictions of every complete
  replicate (AUC from logits), with a cluster bootstrap percentile interval that draws whole patients (all of a
  patient's images, in every replicate, together; an image is its own patient without patient ids);
- **per-fold mean ± sd**: each fold run's metric on its own held-out fold, over all fold runs.

Per ``compare`` pair of cells and per seed both have: the Nadeau–Bengio corrected resampled t-test
(:func:`txkit.stats.corrected_resampled_ttest`) on the fold-by-fold differences A − B of every repeat (the folds
are identical in both cells, so fold j of A and fold j of B held out the same images), and, per repeat, DeLong's
paired test of the macro AUCs of the two cells' pooled out-of-fold predictions (the same images, one prediction
each). The plain Wilcoxon and paired tests over seeds are not made for such grids: their runs are not
independent seeds but overlapping training sets.
"""

from __future__ import annotations

import math

import numpy as np

from txkit.errors import TxkitError

METRICS = ("accuracy", "precision", "recall", "f1", "auc")
COMPARED = ("auc", "accuracy")


def folded(records) -> bool:
    return any(r.folds for r in records)


def run_oof(record) -> dict | None:
    """The run's out-of-fold predictions, its metrics on them and its training size (loaded once), or None
    when it has none (the reason kept in ``record.oof_error``)."""
    if not record.done or record.oof_error:
        return None
    if record.oof is None:
        from txkit.rundir import RunDir, load_predictions
        from txkit.training.metrics import compute_metrics_from_logits

        try:
            stored = load_predictions(record.directory, "oof")
            resolved = RunDir(record.directory).resolved()
        except TxkitError as exc:
            record.oof_error = str(exc).splitlines()[0]
            return None
        if stored is None:
            record.oof_error = "no predictions_oof.npz (the run kept no best checkpoint?)"
            return None
        metrics = compute_metrics_from_logits(stored["y_true"], stored["logits"], stored["classes"], stored["task"])
        record.oof = {**stored, "metrics": {m: float(metrics[m]) for m in METRICS},
                      "n_train": int(resolved.get("train_images", 0)), "n_test": len(stored["ids"]),
                      "digest": (resolved.get("folds") or {}).get("assignment_sha256")}
    return record.oof


def replicates(runs) -> dict[tuple[int, int], list]:
    """(seed, repeat) -> the runs of that replicate whose out-of-fold predictions exist, when all K folds do
    and together they hold every pooled image once; incomplete replicates are left out."""
    groups: dict[tuple[int, int], list] = {}
    for record in runs:
        if record.folds and run_oof(record) is not None:
            groups.setdefault((record.seed, record.repeat), []).append(record)
    complete = {}
    for key, members in sorted(groups.items()):
        members = sorted(members, key=lambda r: r.fold)
        ids = [i for r in members for i in r.oof["ids"]]
        digests = {r.oof["digest"] for r in members}
        if [r.fold for r in members] == list(range(members[0].folds)) and len(set(ids)) == len(ids) \
                and len(digests) == 1:
            complete[key] = members
    return complete


def pooled(members: list) -> dict:
    """The concatenated out-of-fold predictions of a replicate's runs (fold order)."""
    first = members[0].oof
    groups = None if first["groups"] is None else np.concatenate([r.oof["groups"] for r in members])
    return {"y_true": np.concatenate([r.oof["y_true"] for r in members]),
            "logits": np.concatenate([r.oof["logits"] for r in members]),
            "ids": [i for r in members for i in r.oof["ids"]], "groups": groups,
            "classes": first["classes"], "task": first["task"]}


def crossval_report(cells: dict, pairs, root, matching, level: float, resamples: int) -> dict:
    """{"folds", "repeats", "cells": one row per cell, "compare": one row per compared pair and seed}."""
    records = [r for runs in cells.values() for r in runs]
    rows = [cell_row(key, runs, level, resamples) for key, runs in cells.items()]
    compare = []
    for pair, axis, key_a, key_b, runs_a, runs_b in matching(cells, pairs, root):
        seeds = sorted({r.seed for r in runs_a if r.done} & {r.seed for r in runs_b if r.done})
        for seed in seeds:
            compare.append(compare_row(pair, axis, key_a, key_b, [r for r in runs_a if r.seed == seed],
                                       [r for r in runs_b if r.seed == seed], seed, level))
    return {"folds": max(r.folds or 0 for r in records), "repeats": 1 + max(r.repeat for r in records),
            "level": level, "resamples": resamples, "cells": rows, "compare": compare,
            "no_predictions": [{"run": r.id, "error": r.oof_error} for r in records if r.oof_error]}


def cell_row(key: tuple, runs: list, level: float, resamples: int) -> dict:
    from txkit.stats import bootstrap_metrics
    from txkit.training.metrics import compute_metrics_from_logits

    row = {"strategy": key[0], "colorizer": key[1] or "none", "backbone": key[2], "fraction": key[3]}
    fold_runs = [r for r in runs if run_oof(r) is not None]
    complete = replicates(runs)
    row.update(fold_runs=len(fold_runs), replicates=len(complete))
    for m in METRICS:
        values = np.array([r.oof["metrics"][m] for r in fold_runs], dtype=float)
        values = values[np.isfinite(values)]
        row[f"fold_{m}_mean"] = float(values.mean()) if len(values) else math.nan
        row[f"fold_{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    row.update({f"oof_{m}{end}": math.nan for m in METRICS for end in ("", "_low", "_high")})
    row.update(oof_images=0, oof_method="")
    if not complete:
        return row
    sets = [pooled(members) for members in complete.values()]
    y_true = np.concatenate([s["y_true"] for s in sets])
    logits = np.concatenate([s["logits"] for s in sets])
    # a patient's (or, without patients, an image's) predictions of every replicate are drawn together
    groups = np.concatenate([s["groups"] if s["groups"] is not None else np.asarray(s["ids"]) for s in sets])
    classes, task = sets[0]["classes"], sets[0]["task"]
    point = compute_metrics_from_logits(y_true, logits, classes, task)
    ci = bootstrap_metrics(y_true, logits, classes, task, n_resamples=resamples, level=level, groups=groups)
    for m in METRICS:
        row[f"oof_{m}"], (row[f"oof_{m}_low"], row[f"oof_{m}_high"]) = float(point[m]), ci[m]
    row["oof_images"] = len(sets[0]["ids"])
    units = "patients" if sets[0]["groups"] is not None else "images"
    row["oof_method"] = f"cluster bootstrap over {units}, {resamples} resamples"
    return row


def compare_row(pair, axis, key_a, key_b, runs_a: list, runs_b: list, seed: int, level: float) -> dict:
    from txkit.stats import corrected_resampled_ttest, delong_compare

    row = {"a": pair[0], "b": pair[1], "axis": axis, **_coordinates(key_a, "_a"), **_coordinates(key_b, "_b"),
           "fraction": key_a[3], "seed": seed, "level": level}
    fold_a = {(r.repeat, r.fold): r for r in runs_a if run_oof(r) is not None}
    fold_b = {(r.repeat, r.fold): r for r in runs_b if run_oof(r) is not None}
    both = sorted(set(fold_a) & set(fold_b))
    unpaired = [k for k in both if fold_a[k].oof["ids"] != fold_b[k].oof["ids"]]
    if unpaired:
        return {**row, "error": f"fold {unpaired[0][1]} (repeat {unpaired[0][0]}) held out different images in "
                                f"the two cells (their fold assignments differ: check fold_seed)"}
    row["J"] = len(both)
    if both:
        n_train = float(np.mean([fold_a[k].oof["n_train"] for k in both] + [fold_b[k].oof["n_train"] for k in both]))
        n_test = float(np.mean([fold_a[k].oof["n_test"] for k in both]))
        row.update(n_train=n_train, n_test=n_test)
        for metric in COMPARED:
            differences = [fold_a[k].oof["metrics"][metric] - fold_b[k].oof["metrics"][metric] for k in both]
            test = corrected_resampled_ttest(differences, n_train, n_test, level)
            row.update({f"{metric}_difference": test["mean"], f"{metric}_difference_low": test["low"],
                        f"{metric}_difference_high": test["high"], f"{metric}_t": test["t"],
                        f"{metric}_p": test["p_value"], f"{metric}_plain_p": test["plain_p_value"]})
    complete_a, complete_b = replicates(runs_a), replicates(runs_b)
    row["delong"] = []
    for (_, repeat) in sorted(set(complete_a) & set(complete_b)):
        a, b = _aligned(pooled(complete_a[(seed, repeat)]), pooled(complete_b[(seed, repeat)]))
        result = delong_compare(a["y_true"], a["logits"], b["logits"], a["classes"], a["task"], level=level)
        row["delong"].append({"repeat": repeat, "n": len(a["ids"]), "auc_a": result["auc_a"],
                              "auc_b": result["auc_b"], "difference": result["difference"],
                              "p": result["p_value"]})
    return row


def _aligned(a: dict, b: dict) -> tuple[dict, dict]:
    """Both pooled sets in the order of their image ids (the same images, each fold in its own order)."""
    out = []
    for s in (a, b):
        order = np.argsort(np.asarray(s["ids"]), kind="stable")
        out.append({**s, "y_true": s["y_true"][order], "logits": s["logits"][order],
                    "ids": [s["ids"][i] for i in order]})
    return out[0], out[1]


def _coordinates(key: tuple, suffix: str) -> dict:
    return {f"{axis}{suffix}": "none" if value is None else str(value)
            for axis, value in zip(("strategy", "colorizer", "backbone"), key)}


COMPARE_COLUMNS = ["a", "b", "axis", "strategy_a", "colorizer_a", "backbone_a", "strategy_b", "colorizer_b",
                   "backbone_b", "fraction", "seed", "level", "J", "n_train", "n_test"] + \
    [f"{m}_{c}" for m in COMPARED for c in ("difference", "difference_low", "difference_high", "t", "p", "plain_p")] + \
    ["delong_repeat", "delong_n", "delong_auc_a", "delong_auc_b", "delong_difference", "delong_p", "error"]


def compare_rows(compare: list[dict]) -> list[dict]:
    """One CSV row per compared pair, seed and repeat (the DeLong columns are per repeat)."""
    rows = []
    for test in compare:
        for delong in test.get("delong") or [{}]:
            flat = {**test, **{f"delong_{k}": v for k, v in delong.items()}}
            rows.append({c: flat.get(c, "") for c in COMPARE_COLUMNS})
    return rows
