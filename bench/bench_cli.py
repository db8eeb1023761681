"""How fast the CLI answers: `txkit --help`, `list` and `plugins` against bare Python start-up and an
`import torch` in the same run. Target: each txkit command under one second on a 2-core machine.

    python bench/bench_cli.py [--repeat 5] [--smoke]
"""

import argparse
import statistics
import subprocess
import sys
import time

from _common import parse_args

CASES = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "python -c 'import torch' (for contrast)": [sys.executable, "-c", "import torch"],
    "txkit --help": [sys.executable, "-m", "txkit", "--help"],
    "txkit list": [sys.executable, "-m", "txkit", "list"],
    "txkit plugins": [sys.executable, "-m", "txkit", "plugins"],
}


def median_seconds(command, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parse_args(parser, smoke={"repeat": 1}).repeat
    results = {name: median_seconds(cmd, repeat) for name, cmd in CASES.items()}
    base = results["python -c pass (baseline)"]
    print(f"{'command':42} {'median s':>9} {'x python':>9}")
    for name, seconds in results.items():
        print(f"{name:42} {seconds:9.3f} {seconds / base:9.1f}")
    slow = [n for n in CASES if n.startswith("txkit") and results[n] >= 1.0]
    print("all txkit commands under 1 s" if not slow else f"over 1 s: {', '.join(slow)}")


if __name__ == "__main__":
    main()
