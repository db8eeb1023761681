"""What the start-of-run image check costs: ``txkit.datasets.files.check_images`` (a header read per file, and for
PNG the chunk checksums; no pixels decoded) against a full decode of every image (``load_gray``), on N small
grayscale PNGs. Target: a fraction of a second per 2,000 images, well under the decode.

    python bench/bench_check_images.py [--images 2000] [--size 64] [--repeat 5] [--smoke]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import parse_args
from txkit.datasets.base import TxDataset, load_gray
from txkit.datasets.files import check_images, file_split


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parse_args(parser, {"images": 20, "size": 16, "repeat": 1})
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="txkit-bench-") as folder:
        paths = []
        for i in range(args.images):
            path = Path(folder) / f"{i:05d}.png"
            Image.fromarray(rng.integers(0, 256, (args.size, args.size), dtype=np.uint8)).save(path)
            paths.append(path)
        dataset = TxDataset("bench", ["a"], {"train": file_split(paths, [0] * len(paths))})
        check = median_seconds(lambda: check_images(dataset), args.repeat)
        decode = median_seconds(lambda: [load_gray(p) for p in paths], args.repeat)
    print(f"{args.images} PNGs of {args.size} px, median of {args.repeat}: check_images {check:.3f} s, "
          f"full decode {decode:.3f} s")
    print(f"ratio check_images / full decode: {check / decode:.2f}")


if __name__ == "__main__":
    main()
