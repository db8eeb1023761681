"""The report's external-validation and subgroup tables.

Each cell is represented by the run of its first finished seed with test predictions (the run of the interval
table). External validation ([external.LABEL] tables): that run is scored on each external dataset in its own
classes (:mod:`txkit.run.external`; the predictions are stored in the run directory as
predictions_external-KEY.npz), and the table shows its internal test metrics and the external ones with their
bootstrap intervals, and the drop internal − external with the interval of the difference of two independent
bootstraps (:func:`txkit.stats.two_sample_difference`). Subgroups ([report] by): per subgroup of each column,
on the internal test split and on each external dataset, the metrics with intervals and the largest gap
(:func:`txkit.stats.subgroup_analysis`). The internal test split's metadata comes from the run's dataset with
[report] data_options added (such as subgroups = "sex,age" for a csv dataset), which may not change its images.
"""

from __future__ import annotations

from txkit.errors import TxkitError
from txkit.experiments.spec import ExternalDataset, ReportOptions

GAP_METRICS = ("accuracy", "auc")


def _head(key: tuple, record) -> dict:
    strategy, colorizer, backbone, fraction = key
    return {"strategy": strategy, "colorizer": colorizer or "none", "backbone": backbone, "fraction": fraction,
            "seed": record.seed, "run": record.id}


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def external_predicted(record, entry: ExternalDataset) -> dict:
    from txkit.run.external import external_predictions

    return external_predictions(record.directory, entry.key, entry.dataset, entry.data_root, entry.data_options,
                                entry.class_map, entry.split)


def external_rows(chosen: list[tuple], externals: list[ExternalDataset], level: float, resamples: int) -> list[dict]:
    """One row per cell and external dataset: internal and external accuracy and AUC with intervals, the drop."""
    from txkit.stats import bootstrap_metrics, two_sample_difference

    rows = []
    for key, record, internal in chosen:
        for entry in externals:
            row = {**_head(key, record), "external": entry.label, "dataset": entry.dataset}
            try:
                outside = external_predicted(record, entry)
            except TxkitError as exc:
                rows.append({**row, "error": _one_line(exc)})
                continue
            classes, task = outside["classes"], outside["task"]
            present = [k for k, c in enumerate(classes) if c not in outside["absent"]]
            macro = present if outside["absent"] else None
            ci = bootstrap_metrics(outside["y_true"], outside["logits"], classes, task, n_resamples=resamples,
                                   level=level, groups=outside["groups"], macro_classes=macro)
            inside = bootstrap_metrics(internal["y_true"], internal["logits"], classes, task, n_resamples=resamples,
                                       level=level, groups=internal["groups"])
            drop = two_sample_difference(internal["y_true"], internal["logits"], outside["y_true"],
                                         outside["logits"], task, groups_a=internal["groups"],
                                         groups_b=outside["groups"], macro_classes_b=macro, n_resamples=resamples,
                                         level=level)
            row.update(n_internal=int(len(internal["y_true"])), n_external=int(len(outside["y_true"])),
                       absent=", ".join(outside["absent"]), method=ci["method"])
            for metric in GAP_METRICS:
                row[f"internal_{metric}"] = drop[metric]["a"]
                row[f"internal_{metric}_low"], row[f"internal_{metric}_high"] = inside[metric]
                row[f"external_{metric}"] = drop[metric]["b"]
                row[f"external_{metric}_low"], row[f"external_{metric}_high"] = ci[metric]
                row[f"drop_{metric}"] = drop[metric]["difference"]
                row[f"drop_{metric}_low"], row[f"drop_{metric}_high"] = drop[metric]["low"], drop[metric]["high"]
            rows.append(row)
    return rows


def subgroup_rows(chosen: list[tuple], externals: list[ExternalDataset], options: ReportOptions, level: float,
                  resamples: int) -> list[dict]:
    """One row per cell, data (the internal test split, each external dataset) and subgroup column."""
    rows = []
    for key, record, internal in chosen:
        sources = [("test", lambda r=record, p=internal: _internal_metadata(r, p, options.data_options))]
        sources += [(e.label, lambda r=record, e=e: _external_metadata(r, e)) for e in externals]
        for data, load in sources:
            try:
                predicted, metadata = load()
            except TxkitError as exc:
                rows += [{**_head(key, record), "data": data, "by": c, "error": _one_line(exc)} for c in options.by]
                continue
            for column in options.by:
                rows.append(_subgroup_row(key, record, data, column, predicted, metadata, level, resamples))
    return rows


def _internal_metadata(record, predicted: dict, data_options: dict) -> tuple[dict, dict]:
    from txkit.rundir import RunDir
    from txkit.run.evaluate import own_dataset

    dataset = own_dataset(record.directory, RunDir(record.directory).config(), "test", None, data_options, None)
    test = dataset.splits["test"]
    if [str(i) for i in test.ids] != list(predicted["ids"]):
        raise TxkitError(f"{record.id}: its dataset's test split holds other images than its stored predictions")
    return predicted, test.metadata


def _external_metadata(record, entry: ExternalDataset) -> tuple[dict, dict]:
    predicted = external_predicted(record, entry)
    return predicted, predicted["metadata"]


def _subgroup_row(key, record, data: str, column: str, predicted: dict, metadata: dict, level: float,
                  resamples: int) -> dict:
    from txkit.stats import subgroup_analysis

    row = {**_head(key, record), "data": data, "by": column}
    if column not in metadata:
        have = ", ".join(metadata) or "none"
        return {**row, "error": f"no metadata column {column!r} (it has: {have}); for a csv dataset add "
                                f"subgroups to [report] data_options (internal) or to the [external] data_options"}
    classes, task = predicted["classes"], predicted["task"]
    absent = predicted.get("absent") or []
    macro = [k for k, c in enumerate(classes) if c not in absent] if absent else None
    result = subgroup_analysis(predicted["y_true"], predicted["logits"], classes, task, metadata[column],
                               groups=predicted["groups"], n_resamples=resamples, level=level, macro_classes=macro)
    row["method"] = result["method"]
    row["subgroups"] = {name: {"n": g["n"], "too_small": g["too_small"] or "",
                               **{m: g[m] for m in GAP_METRICS},
                               **{f"{m}_low": g["ci"][m][0] for m in GAP_METRICS},
                               **{f"{m}_high": g["ci"][m][1] for m in GAP_METRICS}}
                        for name, g in result["subgroups"].items()}
    for metric in GAP_METRICS:
        gap = result["gaps"][metric]
        row[f"gap_{metric}"], row[f"gap_{metric}_low"], row[f"gap_{metric}_high"] = gap["gap"], gap["low"], gap["high"]
        row[f"gap_{metric}_between"] = " - ".join(gap["between"]) if gap["between"] else gap.get("reason", "")
    return row


def subgroup_csv_rows(rows: list[dict]) -> list[dict]:
    """subgroups.csv: one line per subgroup (the gap columns repeated on its cell's lines)."""
    out = []
    for row in rows:
        head = {k: v for k, v in row.items() if k != "subgroups"}
        for name, values in (row.get("subgroups") or {"": {}}).items():
            out.append({**head, "subgroup": name, **values})
    return out
