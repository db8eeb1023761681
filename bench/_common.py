"""What every benchmark shares: ``--smoke``, a seconds-long run on tiny inputs.

CI runs each benchmark with ``--smoke`` (tests/test_benchmarks.py) so that none can stop running unnoticed, as
bench_train_step.py once did. A smoke run goes through the same code, txkit's and the baseline's, and prints the
same table; only the sizes shrink, so its numbers measure nothing.
"""

from __future__ import annotations

import argparse


def parse_args(parser: argparse.ArgumentParser, smoke: dict) -> argparse.Namespace:
    """``parser``'s arguments plus ``--smoke``, which makes ``smoke`` ({dest: value}) the defaults; options given
    on the command line still win (``--smoke --size 64``)."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, seconds long: checks that the benchmark runs; its numbers mean nothing")
    if parser.parse_known_args()[0].smoke:
        unknown = set(smoke) - set(vars(parser.parse_known_args([])[0]))
        if unknown:  # a renamed option would otherwise be ignored and the smoke run go full size
            raise ValueError(f"smoke defaults for unknown options: {', '.join(sorted(unknown))}")
        parser.set_defaults(**smoke)
    args = parser.parse_args()
    if args.smoke:
        print("smoke run (--smoke): tiny inputs, so the numbers below are not measurements", flush=True)
    return args

