"""Every benchmark under bench/ runs: each is started as `python bench/NAME.py --smoke` (tiny inputs, the same
code as a full run, txkit's and the baseline's) and must exit 0 and print its table's ratio lines. Timings are
never checked: a smoke run's numbers mean nothing. Without this, bench_train_step.py called a removed
`Trainer.setup()` and nobody noticed."""

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

BENCH = ROOT / "bench"
N = r"\d[\d,]*(?:\.\d+)?"  # a finite number: nan or inf in a ratio would mean a measurement of nothing
SIGNED = rf"-?{N}"
FEATURE_CACHE_ROWS = [rf"^{re.escape(f'{strategy} {run}')}(?:\s+{N}){{6}}$"
                      for strategy in ("last-layer", "finetune-from:block7")
                      for run in ("txkit --no-feature-cache", "txkit (feature cache)", "plain PyTorch loop")]
MEMORY_LINE = (rf"^{{}}: 2x the images -> anonymous memory above the imports {SIGNED} -> {SIGNED} MiB "
               rf"\(x{SIGNED}\), peak anon x{N}, peak RSS x{N}$")

# benchmark -> the lines (regular expressions, one line each) its smoke run must print
EXPECTED = {
    "bench_cache_key.py": [rf"^{kind}\s+{N}\s+{N}\s+(?:yes|whole)\s+{N}\s+{N}\s+{N}x\s+{N}\s+{N}$"
                           for kind in ("png64", "png512-16", "pgm512-16")],
    "bench_check_images.py": [rf"^ratio check_images / full decode: {N}$"],
    "bench_cli.py": [rf"^txkit {command}\s+{N}\s+{N}$" for command in ("--help", "list", "plugins")]
                    + [r"^(all txkit commands under 1 s|over 1 s: .+)$"],
    "bench_ddp.py": [rf"^plain PyTorch\s+{N}\s+{N}\s+{N}$", rf"^txkit\s+{N}\s+{N}\s+{N}$",
                     rf"^ratio txkit/plain: {N} at 1 process, {N} at 2 processes$"],
    # "cache used True": the smoke run went through the feature cache, the path this benchmark is about
    "bench_feature_cache.py": FEATURE_CACHE_ROWS + [r"^last-layer: cache used True,",
                                                    r"^finetune-from:block7: cache used True,"],
    "bench_loader.py": [rf"^txkit cached, 2 workers\s+{N}\s+{N}\s+{N}\s+{N}$",
                        rf"^plain PyTorch PIL, 2 workers\s+{N}\s+{N}\s+{N}\s+{N}$",
                        rf"^cached \(2 workers\) / plain PyTorch \(2 workers\): {N}x; cached / model training: {N}x;"],
    "bench_memory.py": [MEMORY_LINE.format("image cache"), MEMORY_LINE.format("in-memory")],
    "bench_train_step.py": [rf"^plain PyTorch\s+{N}$", rf"^txkit\s+{N}$",
                            rf"^ratio txkit/plain: {N} \(overhead [+-]{N} %\)$"],
    "bench_visualizers.py": [rf"^{re.escape(method)}\s+{N}\s+{N}x$" for method in (
        "captum GuidedBackprop (class score)", "txkit guided-backprop (class score)",
        "txkit desalinet (class score)")]
                            + [r"^max \|txkit guided-backprop - captum GuidedBackprop\| = \S+$"],
}
# torchrun's launcher and two worker processes each import torch: longer than the others together
SLOW = {"bench_ddp.py"}


def run_smoke(name: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ,
           # this checkout's txkit, also where another one is installed (CI installs this one)
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TMPDIR": str(tmp_path),  # the benchmarks' temp folders (runs, PNGs, caches) go with the test's
           # the numbers mean nothing, and on a busy 2-core machine two threads per process wait for each other
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCH / name), "--smoke"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_every_benchmark_has_a_smoke_test():
    assert sorted(path.name for path in BENCH.glob("bench_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [])
                                  for name in sorted(EXPECTED)])
def test_benchmark_smoke_run_prints_its_ratios(name, tmp_path):
    out = run_smoke(name, tmp_path)
    assert out.returncode == 0, f"{name} --smoke exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    missing = [pattern for pattern in EXPECTED[name] if not re.search(pattern, out.stdout, re.MULTILINE)]
    assert not missing, f"{name} --smoke printed no line matching {missing}:\n{out.stdout}"
