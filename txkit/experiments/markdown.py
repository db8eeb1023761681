"""results.md: the report's tables as Markdown."""

from __future__ import annotations

import math

METRIC_TITLES = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1", "auc": "AUC",
                 "loss": "loss"}
TEST_METRICS = ("accuracy", "precision", "recall", "f1", "auc")
PLATEAU_METRICS = TEST_METRICS + ("loss",)
SLOPE_TITLES = {"test_accuracy": "test accuracy", "test_f1": "test F1", "test_auc": "test AUC",
                "plateau_accuracy": "val accuracy (p75)", "plateau_loss": "val loss (p75)"}


def number(value: float, digits: int = 4) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def plus_minus(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return number(mean) if not math.isfinite(std) else f"{number(mean)} ± {number(std)}"


def p_value(p: float) -> str:
    return "–" if not math.isfinite(p) else f"{p:.3g}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _coordinates(rows: list[dict]) -> list[str]:
    """strategy, then colorizer and backbone only where they vary."""
    return ["strategy"] + [axis for axis in ("colorizer", "backbone") if len({r[axis] for r in rows}) > 1]


def with_ci(value: float, low: float, high: float) -> str:
    """``0.9036 [0.871, 0.931]``."""
    if not math.isfinite(value):
        return "–"
    if not (math.isfinite(low) and math.isfinite(high)):
        return number(value)
    return f"{number(value)} [{low:.3f}, {high:.3f}]"


def signed_ci(value: float, low: float, high: float) -> str:
    """``-0.012 [-0.050, +0.030]``."""
    if not math.isfinite(value):
        return "–"
    bounds = f" [{low:+.3f}, {high:+.3f}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{value:+.3f}{bounds}"


def percent(level: float) -> str:
    return f"{level * 100:g} %"


def report_markdown(report: dict) -> str:
    parts = [f"# Experiment report: {report['experiment']}", _counts(report), _crossval_section(report),
             _test_table(report), _interval_table(report), _external_section(report), _subgroup_section(report),
             _plateau_table(report), _wilcoxon_section(report), _paired_section(report), _slopes_section(report),
             _failures(report), _plots(report)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _counts(report: dict) -> str:
    runs = report["runs"]
    done, failed = runs.get("done", 0), runs.get("failed", 0)
    waiting = runs["cell_runs"] - done - failed
    return (f"{runs['cells']} cells, {runs['cell_runs']} runs: {done} done, {failed} failed"
            + (f", {waiting} not finished" if waiting else "")
            + f"; {runs['stage_runs']} earlier-stage run(s) shared by the cells.")


def _mean_std_rows(rows: list[dict], prefix: str, metrics) -> tuple[list[str], list[list[str]]]:
    """A cell table: the grid coordinates, fraction, seed count, then mean ± std of each metric."""
    coords = _coordinates(rows)
    header = coords + ["fraction", "n"] + [METRIC_TITLES[m] for m in metrics]
    body = [[str(r[c]) for c in coords] + [f"{r['fraction']:g}", str(r["runs"])]
            + [plus_minus(r[f"{prefix}_{m}_mean"], r[f"{prefix}_{m}_std"]) for m in metrics] for r in rows]
    return header, body


def _test_table(report: dict) -> str:
    header, body = _mean_std_rows(report["cells"], "test", TEST_METRICS)
    over = ("over runs (every fold, repeat and seed; n = finished runs); the test split is never folded"
            if report.get("crossval") else "over seeds (n = finished seeds)")
    return ("## Test metrics\n\nEach run's test split with its best checkpoint (best validation epoch); "
            f"mean ± sample standard deviation {over}.\n\n" + table(header, body))


def _crossval_section(report: dict) -> str:
    cv = report.get("crossval")
    if not cv:
        return ""
    level = percent(cv["level"])
    coords = _coordinates(report["cells"])
    shown = ("auc", "accuracy", "f1")
    header = coords + ["fraction", "fold runs", "images"] + [f"pooled {METRIC_TITLES[m]} [{level} CI]" for m in shown] \
        + [f"per-fold {METRIC_TITLES[m]}" for m in ("auc", "accuracy")]
    body = [[str(r[c]) for c in coords] + [f"{r['fraction']:g}", str(r["fold_runs"]), str(r["oof_images"] or "–")]
            + [with_ci(r[f"oof_{m}"], r[f"oof_{m}_low"], r[f"oof_{m}_high"]) for m in shown]
            + [plus_minus(r[f"fold_{m}_mean"], r[f"fold_{m}_std"]) for m in ("auc", "accuracy")]
            for r in cv["cells"]]
    repeats = f" × {cv['repeats']} repeats" if cv["repeats"] > 1 else ""
    method = next((r["oof_method"] for r in cv["cells"] if r["oof_method"]), "")
    text = (f"## Cross-validation: {cv['folds']} folds{repeats}\n\nEvery cell ran once per fold (× repeat × seed) "
            "on the same folds of the train+val images (whole patients per fold, stratified by class); each fold's "
            "best checkpoint predicted its held-out fold. *Pooled*: the metrics of a cell's out-of-fold predictions "
            "together (each image once per complete repeat and seed; images = the pool), with "
            f"{level} intervals by {method or 'cluster bootstrap'} (a patient's images drawn together). *Per-fold*: "
            "mean ± sd of each fold run's metric on its own held-out fold.\n\n" + table(header, body))
    missing = "".join(f"\n- no out-of-fold predictions of `{m['run']}`: {m['error']}" for m in cv["no_predictions"])
    return text + (f"\n{missing}" if missing else "") + _crossval_compare(cv, coords)


def _crossval_compare(cv: dict, shown: list[str]) -> str:
    tests = cv["compare"]
    if not tests:
        return ""
    level = percent(cv["level"])
    header = ["A", "B", "fraction", "seed", "J", f"AUC A − B [{level} CI]", "p (corrected)", "p (plain t)",
              f"accuracy A − B [{level} CI]", "p (corrected)", "DeLong p, pooled out-of-fold AUC"]
    body = []
    for t in tests:
        cells = [_cell_label(t, "_a", shown), _cell_label(t, "_b", shown), f"{t['fraction']:g}", str(t["seed"])]
        if "error" in t:
            body.append(cells + [t["error"]] + [""] * (len(header) - 5))
            continue
        delong = "; ".join(f"{p_value(d['p'])} ({_signed(d['difference'])}"
                           + (f", repeat {d['repeat']})" if cv["repeats"] > 1 else ")") for d in t["delong"]) or "–"
        body.append(cells + [str(t["J"])]
                    + ([signed_ci(t["auc_difference"], t["auc_difference_low"], t["auc_difference_high"]),
                        p_value(t["auc_p"]), p_value(t["auc_plain_p"]),
                        signed_ci(t["accuracy_difference"], t["accuracy_difference_low"],
                                  t["accuracy_difference_high"]), p_value(t["accuracy_p"])] if t["J"] else ["–"] * 5)
                    + [delong])
    return ("\n\n### Compared over folds\n\nFor each compared pair of cells and seed: the mean over the J = folds × "
            "repeats of the fold-by-fold difference A − B (both cells held out the same images in each fold), with "
            "the Nadeau–Bengio corrected resampled t-test: variance × (1/J + n_test/n_train), Student's t with J − 1 "
            "degrees of freedom, because the folds' training sets overlap and the plain paired t-test over folds "
            "(shown beside it) is too optimistic. Beside them DeLong's paired test of the two cells' pooled "
            "out-of-fold macro AUCs (in brackets the difference A − B). A − B > 0 means A is better.\n\n"
            + table(header, body))


def _interval_table(report: dict) -> str:
    rows = [r for r in report["cells"] if r.get("ci_seed") is not None]
    missing = "".join(f"\n- no test predictions of `{m['run']}`: {m['error']}" for m in report["no_predictions"])
    if not rows:
        return f"## Test metrics with confidence intervals\n{missing}" if missing else ""
    coords = _coordinates(report["cells"])
    header = coords + ["fraction", "seed"] + [METRIC_TITLES[m] for m in TEST_METRICS] + ["AUC (DeLong)"]
    body = [[str(r[c]) for c in coords] + [f"{r['fraction']:g}", str(r["ci_seed"])]
            + [with_ci(r[f"ci_{m}"], r[f"ci_{m}_low"], r[f"ci_{m}_high"]) for m in TEST_METRICS]
            + [with_ci(r["ci_auc"], r["ci_auc_delong_low"], r["ci_auc_delong_high"])] for r in rows]
    level = percent(report["level"])
    which = "fold 0 of the first seed" if report.get("crossval") else "first seed"
    return (f"## Test metrics with {level} confidence intervals ({which} of each cell)\n\n"
            f"The run of each cell's first finished seed: its test metrics (AUC from logits) with {level} "
            f"intervals in brackets, {rows[0]['ci_method']} of its test images (whole patients or studies "
            f"when the dataset has them), and DeLong's interval of the macro AUC. They show how much one "
            "run's numbers move with the test sample; the ± std above shows how much they move with the "
            "seed.\n\n" + table(header, body) + (f"\n{missing}" if missing else ""))


def _validation_label(row: dict, shown: list[str]) -> list[str]:
    return [str(row[c]) for c in shown] + [f"{row['fraction']:g}", str(row["seed"])]


def _external_section(report: dict) -> str:
    rows = report.get("external") or []
    if not rows:
        return ""
    shown = _coordinates(report["cells"])
    level = percent(report["level"])
    header = shown + ["fraction", "seed", "external", "n", "AUC internal", "AUC external", "AUC drop",
                      "accuracy internal", "accuracy external", "accuracy drop"]
    body, problems = [], []
    for row in rows:
        if row.get("error"):
            problems.append(f"- `{row['run']}` on {row['external']}: {row['error']}")
            continue
        cells = _validation_label(row, shown) + [row["external"], f"{row['n_internal']} / {row['n_external']}"]
        for metric in ("auc", "accuracy"):
            cells += [with_ci(*(row[f"{side}_{metric}{end}"] for end in ("", "_low", "_high")))
                      for side in ("internal", "external")]
            cells.append(signed_ci(*(row[f"drop_{metric}{end}"] for end in ("", "_low", "_high"))))
        body.append(cells)
    absent = sorted({(row["external"], row["absent"]) for row in rows if row.get("absent")})
    notes = "".join(f"\n- {label}: the runs' class(es) {classes} have no images there; its macro values average "
                    f"over the others." for label, classes in absent)
    return (f"## External validation\n\nEach cell's run of the interval table, scored on each [external] dataset "
            f"in its own classes, with the intervals of its internal test split beside ({level}, "
            f"{rows[0].get('method', 'bootstrap')}, {report['resamples']} resamples, whole patients when the "
            "data have them). Drop = internal − external: positive when the model does worse on the external data; "
            "its interval comes from bootstrapping both test sets independently. n = internal / external images."
            "\n\n" + (table(header, body) if body else "") + notes
            + ("\n" + "\n".join(problems) if problems else ""))


def _subgroup_section(report: dict) -> str:
    rows = report.get("subgroups") or []
    if not rows:
        return ""
    shown = _coordinates(report["cells"])
    level = percent(report["level"])
    header = shown + ["fraction", "seed", "data", "subgroup", "n", "accuracy", "AUC"]
    gaps_header = shown + ["fraction", "seed", "data", "by", "accuracy gap", "between", "AUC gap", "between"]
    body, gaps, problems = [], [], []
    for row in rows:
        if row.get("error"):
            problems.append(f"- `{row['run']}` on {row['data']} by {row['by']}: {row['error']}")
            continue
        for name, g in row["subgroups"].items():
            label = f"{row['by']} = {name}" + (" (too small)" if g["too_small"] else "")
            body.append(_validation_label(row, shown) + [row["data"], label, str(g["n"])]
                        + [with_ci(g[m], g[f"{m}_low"], g[f"{m}_high"]) for m in ("accuracy", "auc")])
        gaps.append(_validation_label(row, shown) + [row["data"], row["by"]]
                    + [x for m in ("accuracy", "auc")
                       for x in (with_ci(row[f"gap_{m}"], row[f"gap_{m}_low"], row[f"gap_{m}_high"]),
                                 row[f"gap_{m}_between"])])
    return (f"## Subgroups\n\nPer subgroup of each [report] by column, on the internal test split (`test`) and "
            f"on each [external] dataset, with {level} intervals from resamples of the whole set restricted to "
            "the subgroup. A subgroup with fewer than 2 images of a class, or whose interval rests on fewer than "
            "half of the resamples, is too small: no interval, and no part in the gap. The largest gap is the "
            "highest minus the lowest subgroup, with the interval of the same two subgroups' difference."
            "\n\n" + (table(header, body) + "\n\n" + table(gaps_header, gaps) if body else "")
            + ("\n" + "\n".join(problems) if problems else ""))


def _plateau_table(report: dict) -> str:
    header, body = _mean_std_rows(report["cells"], "plateau", PLATEAU_METRICS)
    share = report["plateau"]
    return ("## Representative validation values (75th percentile of the plateau)\n\n"
            f"Plateau: the last {share:.0%} of the epochs of each run's last phase (at least one epoch); "
            "the representative value of a metric is its 75th percentile over the plateau; mean ± std over "
            "seeds.\n\n" + table(header, body))


def _wilcoxon_section(report: dict) -> str:
    tests = report["wilcoxon"]
    if not tests:
        return ""
    shown = _coordinates(report["cells"])
    grouped: dict[tuple, dict] = {}
    for test in tests:
        key = (_cell_label(test, "_a", shown), _cell_label(test, "_b", shown), test["fraction"])
        grouped.setdefault(key, {})[test["metric"]] = test
    header = ["A", "B", "fraction", "n"] + [f"{METRIC_TITLES[m]} p (A − B)" for m in TEST_METRICS]
    body = []
    for (cell_a, cell_b, fraction), by_metric in grouped.items():
        first = next(iter(by_metric.values()))
        body.append([cell_a, cell_b, f"{fraction:g}", str(first["n"])]
                    + [f"{p_value(t['p'])} ({_signed(t['mean_a'] - t['mean_b'])})"
                       for t in (by_metric[m] for m in TEST_METRICS)])
    return ("## Wilcoxon signed-rank tests\n\nTwo-sided `scipy.stats.wilcoxon` on the test metrics of two "
            "cells, paired by seed (n = seeds finished in both); in brackets the mean difference A − B. With n "
            "seeds the smallest possible p is 2/2^n (0.25 for 3 seeds, 0.002 for 10).\n\n" + table(header, body))


def _paired_section(report: dict) -> str:
    tests = report.get("paired") or []
    if not tests:
        return ""
    shown = _coordinates(report["cells"])
    level = percent(report["level"])
    header = ["A", "B", "fraction", "seed", "n", "AUC A", "AUC B", "DeLong p", f"AUC A − B [{level} CI]",
              f"accuracy A − B [{level} CI]"]
    body = []
    for test in tests:
        for s in (s for s in test["seeds"] if "error" not in s):
            body.append([_cell_label(test, "_a", shown), _cell_label(test, "_b", shown), f"{test['fraction']:g}",
                         str(s["seed"]), str(s["n"]), number(s["auc_a"]), number(s["auc_b"]),
                         p_value(s["delong_p"]),
                         _difference(s, "auc"), _difference(s, "accuracy")])
    intro = ("## Paired tests on the test images\n\nFor each compared pair of cells and each seed both "
             "finished, the two runs of that seed scored the same test images: DeLong's test of their macro "
             "AUCs (two-sided, one-vs-rest) and paired-bootstrap intervals of the differences A − B in AUC and "
             f"accuracy ({report['resamples']} resamples, seed 0, whole patients or studies when the dataset "
             "has them); A − B > 0 means A is better. In AUC two cells cannot be told apart at the "
             f"{level} level when no seed's DeLong p is below {1 - report['level']:.2g}, in accuracy when no "
             "seed's interval excludes 0; one is better when every seed says so in the same direction, and "
             "otherwise the seeds disagree.\n\n")
    sentences = "\n".join(f"- {test['sentence']}" for test in tests)
    return intro + (table(header, body) + "\n\n" if body else "") + sentences


def add_sentences(paired: list[dict], cells: list[dict]) -> None:
    """Give each paired comparison its plain-words ``sentence``."""
    shown = _coordinates(cells)
    several = len({c["fraction"] for c in cells}) > 1
    for test in paired:
        test["sentence"] = comparison_sentence(test, shown, several)


def comparison_sentence(test: dict, shown: list[str], several_fractions: bool = False) -> str:
    """E.g. "full and scratch cannot be told apart at the 95 % level (seed 0: DeLong p = 0.41, difference in
    AUC -0.012 [-0.050, +0.030], in accuracy +0.024 [-0.048, +0.095])." AUC is judged by DeLong's p, accuracy
    by whether its paired-bootstrap interval excludes 0 (see report.judge)."""
    a, b = _cell_label(test, "_a", shown), _cell_label(test, "_b", shown)
    level = percent(test["level"])
    at = f" at r = {test['fraction']:g}" if several_fractions else ""
    auc, accuracy = test["verdict"], test.get("accuracy_verdict", "untested")
    if auc == "untested":
        reason = test["seeds"][0]["error"] if test["seeds"] else "no seed finished in both with a test split"
        return f"{a} and {b}{at} have no paired test: {reason}."
    details = "; ".join(_seed_details(s) for s in test["seeds"])
    if auc == "indistinguishable" and accuracy in ("indistinguishable", "untested"):
        return f"{a} and {b}{at} cannot be told apart at the {level} level ({details})."
    words = _auc_words(auc, a, b, at, level, test["seeds"])
    if accuracy != "untested":
        words += "; " + _accuracy_words(accuracy, a, test["seeds"])
    return f"{words} ({details})."


def _auc_words(verdict: str, a: str, b: str, at: str, level: str, seeds: list[dict]) -> str:
    if verdict == "indistinguishable":
        return f"{a} and {b}{at} cannot be told apart in AUC at the {level} level"
    if verdict in ("a higher", "b higher"):
        return f"{a} has a {verdict.split()[1]} AUC than {b}{at} at the {level} level on every seed"
    return (f"{a} and {b}{at} differ in AUC at the {level} level {_where(seeds, 'auc')}, so the runs do not "
            f"tell them apart consistently")


def _accuracy_words(verdict: str, a: str, seeds: list[dict]) -> str:
    if verdict == "indistinguishable":
        return "in accuracy they cannot be told apart"
    if verdict in ("a higher", "b higher"):
        return f"in accuracy {a} is {verdict.split()[1]} on every seed"
    return f"in accuracy they differ {_where(seeds, 'accuracy')}"


def _where(seeds: list[dict], metric: str) -> str:
    """Which seeds differ, for an inconsistent verdict."""
    calls = [(s["seed"], s.get(f"{metric}_differs")) for s in seeds]
    differ = [str(seed) for seed, call in calls if call]
    same = [str(seed) for seed, call in calls if call == 0]
    if same:
        return f"on seed {', '.join(differ)} but not on seed {', '.join(same)}"
    return "in opposite directions on different seeds"


def _seed_details(seed: dict) -> str:
    if "error" in seed:
        return f"seed {seed['seed']}: not tested, {seed['error']}"
    return (f"seed {seed['seed']}: DeLong p = {p_value(seed['delong_p'])}, difference in AUC "
            f"{_difference(seed, 'auc')}, in accuracy {_difference(seed, 'accuracy')}")


def _difference(seed: dict, metric: str) -> str:
    return signed_ci(*(seed[f"{metric}_difference{end}"] for end in ("", "_low", "_high")))


def _cell_label(test: dict, suffix: str, shown: list[str]) -> str:
    """The cell's strategy, with its colorizer and backbone where those vary in the experiment."""
    label = test[f"strategy{suffix}"]
    if "colorizer" in shown and test[f"colorizer{suffix}"] != "none":
        label += f" + {test[f'colorizer{suffix}']}"
    if "backbone" in shown:
        label += f" @ {test[f'backbone{suffix}']}"
    return label


def _signed(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.4f}"


def _slopes_section(report: dict) -> str:
    slopes = report["slopes"]
    if not slopes:
        return ""
    metrics = list(dict.fromkeys(s["metric"] for s in slopes))
    grouped: dict[tuple, dict] = {}
    for s in slopes:
        grouped.setdefault((s["strategy"], s["colorizer"], s["backbone"]), {})[s["metric"]] = s
    coords = _coordinates([{"strategy": k[0], "colorizer": k[1], "backbone": k[2]} for k in grouped])
    header = coords + [f"{SLOPE_TITLES.get(m, m)} A (b)" for m in metrics]
    body = []
    for key, by_metric in grouped.items():
        named = dict(zip(("strategy", "colorizer", "backbone"), key))
        body.append([named[c] for c in coords]
                    + [f"{number(by_metric[m]['A'])} ({number(by_metric[m]['b'])})" if m in by_metric else "–"
                       for m in metrics])
    return ("## Robustness slopes\n\nLeast-squares fit metric = A·r + b over the training fraction r "
            "(`scipy.stats.linregress` on every finished run); a smaller |A| means the metric depends less on "
            "the amount of training data (Suzuki et al., Table 2, where accuracy is in percent: multiply A by "
            "100 to compare).\n\n" + table(header, body))


def _failures(report: dict) -> str:
    if not report["failed"]:
        return ""
    lines = [f"- `{f['run']}`: {f['error']}" for f in report["failed"]]
    return "## Failed runs\n\n" + "\n".join(lines)


def _plots(report: dict) -> str:
    if not report["plots"]:
        return ""
    return "## Plots\n\n" + "\n".join(f"![{name}]({name})" for name in report["plots"])
