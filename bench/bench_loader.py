"""txkit's loader in images/s over real-size chest X-ray PNGs, against a plain PyTorch PIL loader and the model's
own training speed, all measured in this run. Goal on a 2-core machine: the cached loader at 224 px with 2
workers >= 10,000 images/s.

The PNGs are 512-px NIH ChestX-ray14 samples (../shared/data/nih-cxr14-samples/), shifted and flipped into
``--images`` distinct files in a temp folder. Rows:
- txkit cold: the first pass, the decode-once cache built (decode + resize + write) and then read once;
- txkit cached, 0 / 2 workers: later epochs (the 2-worker loader is persistent: workers start once, and that
  first epoch is not counted); workers write batches into a shared-memory ring (txkit.data.batch_ring) and
  the main process copies them out as float32, as a CPU trainer receives them; the row "as delivered (uint8)"
  copies them out as uint8, as a GPU trainer receives them (it scales them on the device);
- plain PyTorch, 0 / 2 workers: a Dataset that opens, converts and resizes each PNG with PIL (no cache);
- model: forward + backward + SGD step of the backbone at the same size and batch.
images/CPU-s counts the CPU time of the main process and its workers: on a shared machine it says what the
loader costs, whatever else runs.

    python bench/bench_loader.py [--images 300] [--size 224] [--epochs 5] [--backbone efficientnet_lite0] [--smoke]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from txkit.data.cache import CacheSettings
from txkit.training.runtime import to_input
from txkit.datasets.intensity import IntensityRule
from txkit.plugins import create
from txkit.data.loader import Loaders, TensorSplit

from _common import parse_args

CPU = torch.device("cpu")
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-cxr14-samples"


def make_pngs(folder: Path, count: int, samples: Path) -> None:
    sources = [np.asarray(Image.open(p).convert("L")) for p in sorted(samples.glob("*.png"))]
    if not sources:
        raise SystemExit(f"no PNGs in {samples}; pass --samples")
    for i in range(count):
        image = np.roll(sources[i % len(sources)], shift=(i * 7) % 97, axis=i % 2)
        image = image[:, ::-1] if (i // 2) % 2 else image
        target = folder / ("a" if i % 2 else "b")
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image)).save(target / f"{i:04d}.png", compress_level=6)


class PlainPIL(Dataset):
    """The baseline: what a hand-written PyTorch loader does with a folder of PNGs."""

    def __init__(self, paths, labels, size):
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            img = img.convert("L").resize((self.size, self.size), Image.BICUBIC)
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).float().div_(255.0)
        return x[None], torch.tensor(self.labels[i])


def cpu_seconds(pids=()) -> float:
    """CPU time of this process, its waited-for children and the live processes ``pids`` (Linux /proc)."""
    import os
    import resource

    total = time.process_time() + sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), f)
                                      for f in ("ru_utime", "ru_stime"))
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def worker_pids(loader) -> list[int]:
    iterator = getattr(loader, "_iterator", None)
    return [w.pid for w in getattr(iterator, "_workers", [])]


def images_per_second(loader, epochs: int, pids=(), convert: bool = True) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second of every process involved): the second does not
    depend on what else the machine runs."""
    seen, start, cpu = 0, time.perf_counter(), cpu_seconds(pids)
    for _ in range(epochs):
        for x, _ in loader() if callable(loader) else loader:
            # what a CPU trainer does (a no-op for float32 batches); a GPU trainer scales uint8 on the GPU
            seen += len(to_input(x, CPU) if convert else x)
    return seen / (time.perf_counter() - start), seen / max(1e-9, cpu_seconds(pids) - cpu)


def model_images_per_second(backbone: str, size: int, batch: int, steps: int, classes: int) -> float:
    from txkit.training.build import build_network, build_strategy
    from txkit.config import TrainConfig

    cfg = TrainConfig(backbone=backbone, weights="none", strategy="full", device="cpu")
    net = build_network(cfg, classes, build_strategy(cfg), load_weights=False)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.rand(batch, 1, size, size), torch.randint(0, classes, (batch,))
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()  # the first step (allocations, kernel choice) is not counted
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="cached epochs timed per row")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--model-steps", type=int, default=2)
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    args = parse_args(parser, smoke={"images": 8, "size": 32, "batch_size": 4, "epochs": 1, "model_steps": 1})
    work = Path(tempfile.mkdtemp(prefix="txkit-bench-loader-"))
    make_pngs(work / "pngs", args.images, args.samples)
    dataset = create("dataset", "imagefolder", root=str(work / "pngs"), val_fraction=0.0, test_fraction=0.0)
    split, size, bs = dataset.split("train"), args.size, args.batch_size
    rule = IntensityRule.parse("auto").fit(split)
    settings = CacheSettings(directory=str(work / "cache"), progress=False)
    rows = {}

    start, cpu = time.perf_counter(), cpu_seconds()
    data = TensorSplit(split, size, dataset.task, rule, settings)
    for _ in Loaders(bs, 0, 0).train(data, 0):
        pass
    rows["txkit cold (cache built, 0 workers)"] = (len(data) / (time.perf_counter() - start),
                                                   len(data) / (cpu_seconds() - cpu))
    loaders0 = Loaders(bs, 0, 0)
    rows["txkit cached, 0 workers"] = images_per_second(iter_epochs(loaders0, data), args.epochs)
    for name, uint8 in ((f"txkit cached, {args.workers} workers", False), ("  as delivered (uint8, for a GPU)", True)):
        loaders2 = Loaders(bs, 0, args.workers, uint8_batches=uint8)
        images_per_second(iter_epochs(loaders2, data), 1)  # starts the persistent workers
        pids = worker_pids(loaders2.train(data, 0))
        rows[name] = images_per_second(iter_epochs(loaders2, data), args.epochs, pids, convert=not uint8)
        del loaders2  # stops its workers

    plain = PlainPIL(split.sources, split.labels, size)
    rows["plain PyTorch PIL, 0 workers"] = images_per_second(DataLoader(plain, batch_size=bs, shuffle=True), 1)
    plain_loader = DataLoader(plain, batch_size=bs, shuffle=True, num_workers=args.workers)
    rows[f"plain PyTorch PIL, {args.workers} workers"] = images_per_second(plain_loader, 1)
    rate = model_images_per_second(args.backbone, size, bs, args.model_steps, dataset.num_classes)
    rows[f"model {args.backbone} train step"] = (rate, float("nan"))

    cached = rows[f"txkit cached, {args.workers} workers"][0]
    plain2 = rows[f"plain PyTorch PIL, {args.workers} workers"][0]
    delivered = rows["  as delivered (uint8, for a GPU)"][0]
    model = rows[f"model {args.backbone} train step"][0]
    print(f"{len(data)} PNGs of 512x512 resized to {size} px, batch {bs}, {torch.get_num_threads()} torch threads")
    print(f"{'loader':40} {'images/s':>10} {'images/CPU-s':>13} {'x plain':>8} {'x model':>8}")
    for name, (rate, per_cpu) in rows.items():
        print(f"{name:40} {rate:10,.0f} {per_cpu:13,.0f} {rate / plain2:8.2f} {rate / model:8.2f}")
    print(f"cached ({args.workers} workers) / plain PyTorch ({args.workers} workers): {cached / plain2:.1f}x; "
          f"cached / model training: {cached / model:.0f}x; goal >= 10,000 images/s: "
          f"{'met' if cached >= 10_000 else 'not met'} (as delivered: {delivered:,.0f} images/s, "
          f"{'met' if delivered >= 10_000 else 'not met'})")


def iter_epochs(loaders: Loaders, data: TensorSplit):
    epoch = iter(range(1, 10_000))
    return lambda: loaders.train(data, next(epoch))


if __name__ == "__main__":
    main()
