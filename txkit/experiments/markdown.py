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


def report_markdown(report: dict) -> str:
    parts = [f"# Experiment report: {report['experiment']}", _counts(report), _test_table(report),
             _plateau_table(report), _wilcoxon_section(report), _slopes_section(report), _failures(report),
             _plots(report)]
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
    return ("## Test metrics\n\nEach run's test split with its best checkpoint (best validation epoch); "
            "mean ± sample standard deviation over seeds (n = finished seeds).\n\n" + table(header, body))


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
