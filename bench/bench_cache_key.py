"""What the image cache's content check costs when a cache is reused, against the old (path, size, mtime) key,
all measured in this run.

Until format 2 a reuse cost one stat per file (the key: sha256 over absolute path, size and mtime). Now the key is
the same, and then every file's fingerprint is checked (txkit.data.cache.changed_files): its probe (CRC-32s of
the first and last 64 KiB; the whole file when it is smaller than 128 KiB), or, where the probe cannot decide
(a file over 128 KiB that is not a PNG whose tail holds its zlib checksum: an uncompressed PGM, TIFF or DICOM),
a blake2b of the whole file. Rows, per kind of file:

- old key, new check: ms per 10,000 files, and their ratio (new / old); the new check includes the key;
- build hashing: what the build adds per file (one read and hash of the whole file, before it is decoded), and
  that as a share of decoding the same file (read_intensity, no resize).

The files are copies of a few distinct images (``--distinct``) written to a temp folder: the check reads bytes
and never decodes, so their number, not their variety, sets its cost. They were just written, so they are in
the page cache (warm: the cost of hashing and system calls); ``--cold`` evicts each file's pages
(posix_fadvise DONTNEED) before every pass, to include reading them from the disk (a VM's disk may still cache).

    python bench/bench_cache_key.py [--files 10000] [--kinds png64,png512-16,pgm512-16] [--repeats 5] [--cold]
    python bench/bench_cache_key.py --smoke      # 200 files of each kind, one pass: seconds
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from txkit.data.cache import FINGERPRINT, _key_and_stats, changed_files, fingerprint
from txkit.datasets.base import read_intensity

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-cxr14-samples"
KINDS = {  # name: (side, bits, format)
    "png64": (64, 8, "png"),
    "png512-16": (512, 16, "png"),
    "pgm512-16": (512, 16, "pgm"),  # uncompressed, as a DICOM slice: the probe cannot decide, re-hashed whole
}


def base_images(side: int, count: int) -> list[np.ndarray]:
    """Chest X-rays (the shared samples, shifted) when present, else smooth synthetic images with noise."""
    rng = np.random.default_rng(0)
    sources = [np.asarray(Image.open(p).convert("L").resize((side, side))) for p in sorted(SAMPLES.glob("*.png"))]
    if not sources:
        y, x = np.mgrid[0:side, 0:side] / side
        sources = [(np.clip(0.5 + 0.4 * np.sin(6 * x + k) * np.cos(4 * y), 0, 1) * 255).astype(np.uint8)
                   for k in range(2)]
    return [np.roll(sources[i % len(sources)], (i * 7) % side, axis=i % 2).astype(np.float64)
            + rng.normal(0, 1, (side, side)) for i in range(count)]


def write_file(path: Path, image: np.ndarray, bits: int, fmt: str) -> None:
    if bits == 16:  # 12-bit data in 16-bit words, as most X-ray and CT exports
        pixels = np.clip(image * 16, 0, 4095).astype(np.uint16)
    else:
        pixels = np.clip(image, 0, 255).astype(np.uint8)
    if fmt == "png":
        Image.fromarray(pixels).save(path)
    else:
        maxval = 65535 if bits == 16 else 255
        path.write_bytes(f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n{maxval}\n".encode()
                         + pixels.astype(">u2" if bits == 16 else np.uint8).tobytes())


def make_files(folder: Path, kind: str, files: int, distinct: int) -> list[str]:
    side, bits, fmt = KINDS[kind]
    originals = []
    for i, image in enumerate(base_images(side, distinct)):
        originals.append(folder / f"original-{i}.{fmt}")
        write_file(originals[-1], image, bits, fmt)
    paths = []
    for i in range(files):
        target = folder / f"{i // 1000:03d}" / f"{i:06d}.{fmt}"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(originals[i % distinct], target)
        paths.append(str(target))
    return paths


def old_key(sources) -> str:
    """The key of format 1, the whole of a reuse check before content fingerprints."""
    digest = hashlib.sha256(b"settings")
    for source in sources:
        path = os.path.abspath(source)
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def new_check(sources, prints) -> list[int]:
    _, stats = _key_and_stats(sources, 224, "auto")
    return changed_files(sources, stats, prints)


def evict(paths) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(function, paths, repeats: int, cold: bool) -> float:
    """Median seconds of ``function()`` over ``repeats`` passes (the pages evicted before each when ``cold``)."""
    times = []
    for _ in range(repeats):
        if cold:
            evict(paths)
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_kind(kind: str, files: int, distinct: int, repeats: int, cold: bool, decode_sample: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"txkit-bench-key-{kind}-") as tmp:
        paths = make_files(Path(tmp), kind, files, distinct)
        start = time.perf_counter()
        prints = np.zeros(len(paths), FINGERPRINT)
        for index, path in enumerate(paths):
            prints[index] = fingerprint(path)
        hashing = (time.perf_counter() - start) / len(paths)
        sample = paths[:decode_sample]
        start = time.perf_counter()
        for path in sample:
            read_intensity(path)
        decoding = (time.perf_counter() - start) / len(sample)
        assert new_check(paths, prints) == []  # nothing changed: a pass that finds nothing is the reuse cost
        old = timed(lambda: old_key(paths), paths, repeats, cold)
        new = timed(lambda: new_check(paths, prints), paths, repeats, cold)
        return {"kind": kind, "files": len(paths), "bytes": os.path.getsize(paths[0]),
                "probe_decides": bool(prints["probe_decides"].all()), "old_ms": old * 1e3 * 1e4 / len(paths),
                "new_ms": new * 1e3 * 1e4 / len(paths), "ratio": new / old, "hash_ms": hashing * 1e3,
                "decode_ms": decoding * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--distinct", type=int, default=32, help="distinct images the files are copies of")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="evict the files' pages before every pass")
    parser.add_argument("--smoke", action="store_true", help="200 files of each kind, one pass (seconds)")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.repeats, args.distinct = 200, 1, 4
    print(f"{os.cpu_count()} CPU(s), page cache {'cold' if args.cold else 'warm'}, median of {args.repeats} pass(es)")
    print(f"{'kind':<10} {'files':>6} {'bytes/file':>10} {'probe':>6} {'old ms/1e4':>10} {'new ms/1e4':>10} "
          f"{'ratio':>7} {'build hash ms/file':>18} {'decode ms/file':>14}")
    for kind in args.kinds.split(","):
        row = bench_kind(kind, args.files, args.distinct, args.repeats, args.cold, min(200, args.files))
        probe = "yes" if row["probe_decides"] else "whole"
        print(f"{row['kind']:<10} {row['files']:>6} {row['bytes']:>10,} {probe:>6} {row['old_ms']:>10.1f} "
              f"{row['new_ms']:>10.1f} {row['ratio']:>6.1f}x {row['hash_ms']:>18.3f} {row['decode_ms']:>14.3f}",
              flush=True)


if __name__ == "__main__":
    main()
