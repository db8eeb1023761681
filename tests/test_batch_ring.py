"""Worker batches through the shared-memory ring (txkit.data.batch_ring)."""

from collections import namedtuple

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import txkit.data.batch_ring as batch_ring
from test_image_cache import SIZE, train_split, write_folder
from txkit.data.cache import CacheSettings
from txkit.training.runtime import to_input
from txkit.data.batch_ring import BatchRing, Numbered, RingLoader
from txkit.data.loader import Loaders, TensorSplit

CPU = torch.device("cpu")


@pytest.fixture
def splits(tmp_path):
    split = train_split(write_folder(tmp_path / "images", per_class=9, bits="8"))
    settings = CacheSettings(directory=str(tmp_path / "cache"), progress=False)
    return TensorSplit(split, SIZE, "multiclass"), TensorSplit(split, SIZE, "multiclass", cache=settings)


def expected(plain: TensorSplit, batch) -> torch.Tensor:
    return torch.stack([plain[i][0] for i in batch])


def test_a_slot_overwritten_before_its_copy_is_refused():
    ring = BatchRing(slots=3, batch_len=2, image_shape=(1, 4, 4), dtype=torch.uint8)
    ref = ring.write(Numbered([0, 1], 4), lambda out: out.fill(7), np.array([0, 1]))
    x, y = ring.take(ref, torch.Tensor.clone)
    assert torch.equal(x, torch.full((2, 1, 4, 4), 7, dtype=torch.uint8)) and y.tolist() == [0, 1]
    ring.write(Numbered([2], 4 + 3), lambda out: out.fill(9), np.array([1]))  # batch 7 takes batch 4's slot
    with pytest.raises(RuntimeError, match="slot 1 holds batch 7, expected batch 4"):
        ring.take(ref, torch.Tensor.clone)
    assert ring.write(Numbered([0, 1, 2], 8), lambda out: out.fill(1), np.array([0, 0, 0])) is None  # too long


def test_batches_longer_than_a_slot_still_arrive(splits):
    plain, cached = splits
    Sampler = namedtuple("Sampler", "batches")
    long_batches = [list(range(0, 11)), list(range(11, len(plain)))]  # a slot holds batch_size + 1 = 5

    class Long(Sampler):
        def __iter__(self):
            return iter(self.batches)

        def __len__(self):
            return len(self.batches)

    loader = Loaders(4, seed=0, num_workers=2).train(cached, 0, Long(long_batches))
    assert isinstance(loader, RingLoader)
    got = [to_input(x, CPU) for x, _ in loader]
    assert [len(x) for x in got] == [11, len(plain) - 11]
    assert all(torch.equal(x, expected(plain, batch)) for x, batch in zip(got, long_batches, strict=True))


def test_without_room_in_shared_memory_batches_take_dataloaders_way(splits, monkeypatch):
    plain, cached = splits
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(batch_ring.shutil, "disk_usage", lambda path: Usage(1 << 20, 1 << 20, 1000))
    loader = Loaders(4, seed=0, num_workers=2).evaluation(cached, 5)
    assert not isinstance(loader, RingLoader)
    assert torch.equal(torch.cat([to_input(x, CPU) for x, _ in loader]), expected(plain, range(len(plain))))


def test_a_subset_shard_goes_through_the_ring(splits):
    plain, cached = splits
    rows = list(range(1, len(plain), 2))  # what ddp.shard gives process 1 of 2
    loader = Loaders(4, seed=0, num_workers=2).evaluation(Subset(cached, rows), 3)
    assert isinstance(loader, RingLoader)
    batches = list(loader)
    assert torch.equal(torch.cat([x for x, _ in batches]), expected(plain, rows))
    assert torch.equal(torch.cat([y for _, y in batches]), torch.stack([plain[i][1] for i in rows]))


def test_dropping_the_loaders_stops_their_workers(splits):
    _, cached = splits
    loaders = Loaders(4, seed=0, num_workers=2)
    loader = loaders.train(cached, 0)
    list(loader)
    workers = list(loader._iterator._workers)
    assert all(w.is_alive() for w in workers)
    del loaders, loader  # no reference cycle: freed at once, and DataLoader stops its workers
    assert not any(w.is_alive() for w in workers)


def test_dataloaders_pin_memory_step_copies_a_batch_out_of_its_slot(monkeypatch):
    """On CUDA, DataLoader's pin-memory thread calls pin_memory() on what a worker returned: for a SlotRef that
    is the copy out of the ring (pinned memory needs CUDA, so the copy is a plain one here)."""
    from torch.utils.data._utils.pin_memory import pin_memory

    monkeypatch.setattr(batch_ring, "_pinned_copy", torch.Tensor.clone)
    ring = BatchRing(slots=2, batch_len=3, image_shape=(1, 2, 2), dtype=torch.uint8)
    ref = ring.write(Numbered([5, 6], 1), lambda out: np.copyto(out, np.arange(8, dtype=np.uint8).reshape(2, 1, 2, 2)),
                     np.array([1, 0]))
    x, y = pin_memory(ref)
    assert torch.equal(x, torch.arange(8, dtype=torch.uint8).reshape(2, 1, 2, 2)) and y.tolist() == [1, 0]
    ring.pixels.zero_()
    assert x.sum() == 28  # a copy, not a view of the slot


def write_chexpert_layout(base, patients=6):
    """base/CheXpert-v1.0-small/{train,valid}.csv and their JPEGs, as the CheXpert download lays them out."""
    from PIL import Image
    from txkit_chest_datasets.chexpert import HEADER, OBSERVATIONS

    folder = base / "CheXpert-v1.0-small"
    rng = np.random.default_rng(0)
    for name, split, first in (("train.csv", "train", 1), ("valid.csv", "valid", 64541)):
        lines = [",".join(HEADER)]
        for p in range(first, first + (patients if split == "train" else 3)):
            path = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study1/view1_frontal.jpg"
            Image.fromarray(rng.integers(0, 256, (40, 36), dtype=np.uint8)).save(base / _made(base / path))
            labels = ["1.0" if (p + k) % 2 else "0.0" for k in range(len(OBSERVATIONS))]
            lines.append(",".join([path, "Female", "60", "Frontal", "AP", *labels]))
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def _made(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_chexpert_layout_folder_trains_from_the_disk_cache_with_workers_through_the_ring(tmp_path):
    """The dataset plugin builds file-backed splits (file_split), so a run gets the decode-once cache and its
    loader workers hand batches over through the ring, with no option to remember."""
    from txkit.testing import tiny_config
    from txkit.training.engine import Trainer

    root = write_chexpert_layout(tmp_path)
    cfg = tiny_config(dataset="chexpert", data_root=str(root), num_workers=2, batch_size=4,
                      cache_dir=str(tmp_path / "cache"))
    trainer = Trainer(cfg)
    assert trainer.train_data.split.sources is not None and trainer.train_data.cache_status == "built"
    trainer.start_phase(0)
    loader = trainer.loaders.train(trainer.train_data, epoch=0)
    assert isinstance(loader, RingLoader)
    seen = [to_input(x, CPU) for x, _ in loader]
    trainer.loaders.close()
    plain = TensorSplit(trainer.train_data.split, trainer.size, "multilabel", trainer.rule)
    order = [i for batch in loader.batch_sampler.current for i in batch]
    assert torch.equal(torch.cat(seen), torch.stack([plain[i][0] for i in order]))
    assert Trainer(cfg).train_data.cache_status == "hit"  # the next run reads the cache the first one built
