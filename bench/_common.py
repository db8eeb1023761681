"""What the benchmarks share: ``--smoke``, a seconds-long run on tiny inputs, and a plain loop's optimiser.

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


def same_optimizer(trainer, net):
    """A new optimiser for ``net`` (``trainer.net`` or a copy of it) with the class and per-group settings of the
    trainer's: learning rates with their head and bias multipliers, momentum, weight decay on weights only. A
    plain loop's step then does the same arithmetic as txkit's, and a ratio measures the loop, not the optimiser."""
    order = {id(p): i for i, p in enumerate(trainer.net.parameters())}
    params = list(net.parameters())
    groups = [{**group, "params": [params[order[id(p)]] for p in group["params"]]}
              for group in trainer.optimizer.param_groups]
    return type(trainer.optimizer)(groups)
