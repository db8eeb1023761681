"""Peak memory of one training epoch's loading over 5,000 vs 50,000 generated 32x32 PNGs (two classes), with the
decode-once image cache, against the same with the cache off (txkit's in-memory path), each in a fresh process.

Each child builds the dataset (file list), builds the cache, then iterates one training epoch through the run's
loader. Reported: peak RSS (getrusage; counts the memmap's file pages the epoch touched, which are the kernel's
page cache and reclaimable) and the peak of anonymous memory (RssAnon, sampled every batch: what the process
really owns). Goal: anonymous memory does not grow with the number of images beyond the file list.

    python bench/bench_memory.py [--counts 5000 50000] [--size 32] [--smoke]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import parse_args


def make_pngs(folder: Path, count: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (64, size, size), dtype=np.uint8)
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = np.roll(tiles[i % 64], i // 64, axis=i % 2)
        Image.fromarray(image).save(folder / ("a" if i % 2 else "b") / f"{i:06d}.png", compress_level=1)


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(folder: str, size: int, cache: bool, cache_dir: str) -> None:
    import resource

    from txkit.data.cache import CacheSettings
    from txkit.plugins import create
    from txkit.data.loader import Loaders, TensorSplit

    floor = status_kib("RssAnon")
    start = time.perf_counter()
    dataset = create("dataset", "imagefolder", root=folder, val_fraction=0.0, test_fraction=0.0)
    split = dataset.split("train")
    data = TensorSplit(split, size, dataset.task, cache=CacheSettings(enabled=cache, directory=cache_dir,
                                                                      progress=False))
    peak_anon, seen = status_kib("RssAnon"), 0
    for x, _ in Loaders(256, 0, 0).train(data, 0):
        seen += len(x)
        peak_anon = max(peak_anon, status_kib("RssAnon"))
    print(json.dumps({"images": seen, "status": data.cache_status, "seconds": time.perf_counter() - start,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "peak_anon_mib": peak_anon / 1024, "import_anon_mib": floor / 1024}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--child", nargs=4, metavar=("FOLDER", "SIZE", "CACHE", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = parse_args(parser, smoke={"counts": [20, 40], "size": 16})
    if args.child:
        folder, size, cache, cache_dir = args.child
        return child(folder, int(size), cache == "1", cache_dir)
    work = Path(tempfile.mkdtemp(prefix="txkit-bench-memory-"))
    print(f"{'images':>7} {'loader':>14} {'peak RSS MiB':>13} {'peak anon MiB':>14} {'after import':>13} {'s':>6}")
    results = {}
    for count in args.counts:
        make_pngs(work / str(count), count, args.size)
        for cache in (True, False):
            out = subprocess.run([sys.executable, __file__, "--child", str(work / str(count)), str(args.size),
                                  "1" if cache else "0", str(work / "cache")], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[count, cache] = r
            name = "image cache" if cache else "in-memory"
            print(f"{r['images']:7,} {name:>14} {r['peak_rss_mib']:13.1f} {r['peak_anon_mib']:14.1f} "
                  f"{r['import_anon_mib']:13.1f} {r['seconds']:6.1f}")
    small, large = min(args.counts), max(args.counts)
    if small != large:
        for cache, name in ((True, "image cache"), (False, "in-memory")):
            a, b = results[small, cache], results[large, cache]
            grown = [r["peak_anon_mib"] - r["import_anon_mib"] for r in (a, b)]
            print(f"{name}: {large // small}x the images -> anonymous memory above the imports {grown[0]:.1f} -> "
                  f"{grown[1]:.1f} MiB (x{grown[1] / grown[0]:.1f}), "
                  f"peak anon x{b['peak_anon_mib'] / a['peak_anon_mib']:.2f}, peak RSS x{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()
