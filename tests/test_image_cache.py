"""The decode-once image cache (txkit.data.cache) and the loaders that read it (txkit.data.loader)."""

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import txkit.datasets.intensity as intensity
import txkit.data.loader as data_module
from txkit.data.cache import CacheSettings, cache_root, clear_caches, list_caches, open_images
from txkit.cli.data import data_group
from txkit.datasets.intensity import IntensityRule
from txkit.errors import DataError
from txkit.plugins import create
from txkit.training.runtime import to_input
from txkit.data.loader import Loaders, ShuffledBatches, TensorSplit, make_loader

SIZE = 16
CPU = torch.device("cpu")


def write_folder(root, per_class=6, seed=0, bits="mixed"):
    """Two classes of PNGs of assorted sizes: 8-bit, 16-bit or both."""
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (18 + i, 23 - i)
            if bits == "16" or (bits == "mixed" and i % 2):
                Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16)).save(root / name / f"{i}.png")
            else:
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "images")


@pytest.fixture
def settings(tmp_path):
    return CacheSettings(directory=str(tmp_path / "cache"), progress=False)


def train_split(folder):
    return create("dataset", "imagefolder", root=str(folder), val_fraction=0.0).split("train")


def assert_same(a: TensorSplit, b: TensorSplit):
    assert len(a) == len(b)
    for i in range(len(a)):
        (xa, ya), (xb, yb) = a[i], b[i]
        assert xa.dtype == xb.dtype == torch.float32 and xa.shape == (1, SIZE, SIZE)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for (xa, ya), (xb, yb) in zip(make_loader(a, 5, True, seed=3), make_loader(b, 5, True, seed=3)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("bits, modes", [("8", {"L"}), ("16", {"I;16"}), ("mixed", {"L", "I;16"})])
def test_tensors_identical_with_and_without_cache_8_and_16_bit(tmp_path, settings, bits, modes):
    split = train_split(write_folder(tmp_path / "images", bits=bits))
    assert {Image.open(p).mode for p in split.sources} == modes
    plain, cached = TensorSplit(split, SIZE, "multiclass"), TensorSplit(split, SIZE, "multiclass", cache=settings)
    assert (plain.cache_status, cached.cache_status) == ("off", "built")
    assert_same(plain, cached)
    again = TensorSplit(split, SIZE, "multiclass", cache=settings)
    assert again.cache_status == "hit"
    assert_same(plain, again)
    assert plain[0][0].max() <= 1 and plain[0][0].std() > 0
    if bits == "8":
        assert cached.store.header["dtype"] == "uint8"
        # the values txkit always gave for 8-bit images (torch's division), so earlier runs reproduce
        old_rule = torch.tensor(cached.store.array[1], dtype=torch.float32).div_(255.0)
        assert torch.equal(cached[1][0][0], old_rule)
        assert torch.equal(cached[1][0][0], torch.from_numpy(intensity.as_float(cached.store.array[1])))


def test_fraction_subset_shares_the_whole_split_cache(folder, settings):
    split = train_split(folder)
    keep = [0, 3, 4, 9]
    TensorSplit(split, SIZE, "multiclass", cache=settings)
    part = TensorSplit(split, SIZE, "multiclass", cache=settings, indices=keep)
    assert part.cache_status == "hit" and len(part) == 4
    assert_same(TensorSplit(split.subset(keep), SIZE, "multiclass"), part)


def test_float_images_and_a_late_float_image_promote_the_file(folder, settings, monkeypatch):
    original = intensity.load_input

    def some_floats(split, index, size, rule):  # as a rule giving floats for some images (e.g. 16-bit ones)
        image = original(split, index, size, rule)
        return (image.astype(np.float32) / 7.0) if index >= 3 else image

    monkeypatch.setattr(intensity, "load_input", some_floats)
    monkeypatch.setattr(data_module, "load_input", some_floats)
    split = train_split(folder)
    cached = TensorSplit(split, SIZE, "multiclass", cache=settings)
    assert cached.store.header["dtype"] == "float32"
    assert_same(TensorSplit(split, SIZE, "multiclass"), cached)
    assert not list((settings.root / "images").glob("*.tmp"))


def test_edited_image_invalidates_the_cache(folder, settings):
    split = train_split(folder)
    first = TensorSplit(split, SIZE, "multiclass", cache=settings)
    old_key, old_pixels = first.store.header["key"], first[2][0].clone()
    path = split.sources[2]
    with Image.open(path) as img:
        shape, mode = img.size[::-1], img.mode
    flipped = 255 - np.asarray(Image.open(path).convert("L")) if mode == "L" else None
    Image.fromarray(flipped if flipped is not None else np.full(shape, 1000, np.uint16)).save(path)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = TensorSplit(train_split(folder), SIZE, "multiclass", cache=settings)
    assert second.cache_status == "built" and second.store.header["key"] != old_key
    assert not torch.equal(second[2][0], old_pixels)
    assert_same(TensorSplit(train_split(folder), SIZE, "multiclass"), second)


def test_killed_build_is_never_trusted(folder, settings, monkeypatch):
    split = train_split(folder)
    original = intensity.load_input

    def dies_at_five(split, index, size, rule):
        if index == 5:
            raise KeyboardInterrupt  # the build is cut short mid-way
        return original(split, index, size, rule)

    monkeypatch.setattr(intensity, "load_input", dies_at_five)
    with pytest.raises(KeyboardInterrupt):
        TensorSplit(split, SIZE, "multiclass", cache=settings)
    images = settings.root / "images"
    assert not list(images.glob("*.npy")) and not list(images.glob("*.json")) and not list(images.glob("*.tmp"))
    monkeypatch.setattr(intensity, "load_input", original)
    built = TensorSplit(split, SIZE, "multiclass", cache=settings)
    key = built.store.header["key"]
    # A SIGKILLed build leaves a temp file; a data file whose header (the complete-marker) is missing, or whose
    # size disagrees with it, is not trusted either.
    (images / f"{key}.4242-deadbeef.tmp").write_bytes(b"partial")
    (images / f"{key}.json").unlink()
    rebuilt = TensorSplit(split, SIZE, "multiclass", cache=settings)
    assert rebuilt.cache_status == "built" and not list(images.glob("*.tmp"))
    with open(images / f"{key}.npy", "ab") as handle:
        handle.write(b"\0" * 10)
    assert TensorSplit(split, SIZE, "multiclass", cache=settings).cache_status == "built"
    assert_same(TensorSplit(split, SIZE, "multiclass"), TensorSplit(split, SIZE, "multiclass", cache=settings))


def _build_in_process(folder, cache_dir, barrier, results):
    split = train_split(folder)
    barrier.wait()
    store = open_images(split, SIZE, IntensityRule("auto"), CacheSettings(directory=cache_dir, progress=False))
    results.put((store.status, store.header["key"], np.array(store.array)))


def test_two_processes_building_at_once_both_get_the_same_data(folder, settings):
    context = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_build_in_process, args=(folder, str(settings.root), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(status for status, _, _ in got) == ["built", "hit"]
    assert got[0][1] == got[1][1] and np.array_equal(got[0][2], got[1][2])
    reference = TensorSplit(train_split(folder), SIZE, "multiclass")
    pixels = torch.stack([data_module.pixels_to_tensor(image) for image in got[0][2]])
    assert torch.equal(pixels[:, None], torch.stack([reference[i][0] for i in range(len(reference))]))
    assert len(list_caches(settings.root)) == 1


@pytest.mark.parametrize("bits, uint8_batches, arrives", [("8", False, torch.float32), ("8", True, torch.uint8),
                                                           ("mixed", True, torch.float32)])
def test_workers_read_the_memmap_and_persist_across_epochs(tmp_path, settings, bits, uint8_batches, arrives):
    split = train_split(write_folder(tmp_path / "images", bits=bits))
    plain, cached = TensorSplit(split, SIZE, "multiclass"), TensorSplit(split, SIZE, "multiclass", cache=settings)
    loaders = Loaders(4, seed=5, num_workers=2, uint8_batches=uint8_batches)
    first_loader = None
    for epoch in range(2):
        loader = loaders.train(cached, epoch)
        first_loader = first_loader or loader
        assert loader is first_loader and loader.persistent_workers
        batches = list(ShuffledBatches(len(plain), 4, 5, epoch))
        for (x, y), batch in zip(loader, batches, strict=True):
            assert x.dtype == arrives  # uint8_batches (CUDA): 8-bit pixels stay uint8 until the device
            assert torch.equal(to_input(x, CPU), torch.stack([plain[i][0] for i in batch]))
            assert torch.equal(y, torch.stack([plain[i][1] for i in batch]))
    assert (first_loader.ring.stamps >= 0).any()  # the workers wrote their batches into the ring
    evaluation = list(loaders.evaluation(cached, 7))
    assert torch.equal(torch.cat([to_input(x, CPU) for x, _ in evaluation]),
                       torch.stack([plain[i][0] for i in range(len(plain))]))
    in_process = next(iter(Loaders(4, seed=5, num_workers=0).evaluation(cached, 7)))[0]
    assert in_process.dtype == torch.float32 and torch.equal(in_process, to_input(evaluation[0][0], CPU))


def test_reused_loader_draws_from_the_global_generator_like_a_fresh_one(folder, settings):
    data = TensorSplit(train_split(folder), SIZE, "multiclass", cache=settings)
    loaders = Loaders(4, seed=0, num_workers=2)
    list(loaders.train(data, 0))
    torch.manual_seed(11)
    list(loaders.train(data, 1))
    reused = torch.rand(3)
    torch.manual_seed(11)
    list(make_loader(data, 4, True, 0, 1))
    assert torch.equal(reused, torch.rand(3))


def test_cache_dir_setting_environment_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TXKIT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env" and cache_root(tmp_path / "field") == tmp_path / "field"
    monkeypatch.delenv("TXKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "txkit"


def test_unwritable_cache_dir_is_one_line(folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="`cache_dir`"):
        TensorSplit(train_split(folder), SIZE, "multiclass", cache=CacheSettings(directory=str(blocker)))


def test_cli_builds_lists_and_clears(folder, settings):
    runner = CliRunner()
    base = ["cache", "--cache-dir", str(settings.root)]
    built = runner.invoke(data_group, [*base[:1], "imagefolder", "--data-root", str(folder), "--image-size", "16",
                                       *base[1:], "--json"])
    assert built.exit_code == 0, built.output
    report = json.loads(built.output)
    assert report["image_size"] == 16 and {s["status"] for s in report["splits"]} == {"built"}
    again = runner.invoke(data_group, [*base[:1], "imagefolder", "--data-root", str(folder), "--image-size", "16",
                                       *base[1:]])
    assert again.exit_code == 0 and "hit" in again.output and "built" not in again.output
    listed = runner.invoke(data_group, [*base, "--list"])
    assert listed.exit_code == 0 and "imagefolder train" in listed.output and "16 px" in listed.output
    assert len(json.loads(runner.invoke(data_group, [*base, "--list", "--json"]).output)["caches"]) == 3
    kept = runner.invoke(data_group, [*base, "--clear", "--older-than", "1"])
    assert kept.exit_code == 0 and "removed 0" in kept.output and len(list_caches(settings.root)) == 3
    cleared = runner.invoke(data_group, [*base, "--clear"])
    assert cleared.exit_code == 0 and "removed 3" in cleared.output and not list_caches(settings.root)
    assert clear_caches(settings.root) == (0, 0)
    misuse = runner.invoke(data_group, ["cache", "--list", "--clear"])
    assert misuse.exit_code != 0 and "one of them" in misuse.output


def test_full_disk_is_one_line_and_leaves_nothing(folder, settings, monkeypatch):
    import errno

    import txkit.data.cache as images_module

    def full(self, index, image):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images_module._Writer, "put", full)
    with pytest.raises(DataError, match="No space left on device.*`cache_dir`"):
        TensorSplit(train_split(folder), SIZE, "multiclass", cache=settings)
    assert [p.suffix for p in (settings.root / "images").iterdir()] == [".lock"]


@pytest.mark.parametrize("strategy", ["full", "last-layer"])
def test_training_with_workers_equals_training_in_the_main_process(tmp_path, strategy):
    """Batches that workers write into the ring (copied out as float32 on the CPU) train to the same weights as
    the main process's batches (with the frozen-prefix feature cache too, for last-layer); a finished run has
    stopped its workers."""
    from safetensors.torch import load_file

    from txkit.training import session
    from txkit.config import TrainConfig

    root = write_folder(tmp_path / "images", per_class=10, bits="8")
    weights = {}
    for workers in (0, 2):
        cfg = TrainConfig(dataset="imagefolder", data_root=str(root), backbone="resnet18", weights="none",
                          strategy=strategy, image_size=SIZE * 2, epochs=2, batch_size=4, seed=3, device="cpu",
                          num_workers=workers, cache_dir=str(tmp_path / "cache"))
        run_dir, _ = session.train(cfg, tmp_path / f"workers-{workers}")
        weights[workers] = load_file(str(run_dir / "model.safetensors"))
        assert not multiprocessing.active_children()
    assert weights[0].keys() == weights[2].keys()
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


# --- content the key's (path, size, mtime) cannot see, and damaged cache files ---------------------------------
def write_pgm(path, pixels):
    """An uncompressed 8- or 16-bit PGM: the same shape always gives the same file size."""
    maxval = 65535 if pixels.dtype == np.uint16 else 255
    header = f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n{maxval}\n".encode()
    Path(path).write_bytes(header + pixels.astype(">u2" if maxval == 65535 else np.uint8).tobytes())


def rewrite_keeping_size_and_mtime(path, write):
    """``write(path)`` new content in place, then put the old modification time back (as `cp -p`, `rsync -t`)."""
    before = os.stat(path)
    write(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.fixture
def pgm_folder(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (tmp_path / "pgm" / name).mkdir(parents=True)
        for i in range(3):
            write_pgm(tmp_path / "pgm" / name / f"{i}.pgm", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    return tmp_path / "pgm"


def test_content_edit_keeping_size_and_mtime_is_seen(pgm_folder, settings, capsys):
    split = train_split(pgm_folder)
    first = TensorSplit(split, SIZE, "multiclass", cache=settings)
    old = first[1][0].clone()
    path = split.sources[1]
    rewrite_keeping_size_and_mtime(path, lambda p: write_pgm(p, 255 - np.asarray(Image.open(p))))
    capsys.readouterr()
    again = TensorSplit(train_split(pgm_folder), SIZE, "multiclass", cache=settings)
    assert not torch.equal(again[1][0], old)
    assert_same(TensorSplit(train_split(pgm_folder), SIZE, "multiclass"), again)
    warning = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("warning: ") and str(path) in warning[0]
    assert TensorSplit(train_split(pgm_folder), SIZE, "multiclass", cache=settings).cache_status == "hit"


def test_only_the_changed_image_is_decoded_again_and_the_bytes_equal_a_full_build(pgm_folder, tmp_path, settings,
                                                                                 monkeypatch):
    split = train_split(pgm_folder)
    TensorSplit(split, SIZE, "multiclass", cache=settings)
    last = len(split) - 1
    rewrite_keeping_size_and_mtime(split.sources[last], lambda p: write_pgm(p, np.asarray(Image.open(p))[::-1].copy()))
    decoded = []
    original = intensity.load_input

    def counting(split, index, size, rule):
        decoded.append(index)
        return original(split, index, size, rule)

    monkeypatch.setattr(intensity, "load_input", counting)
    refreshed = open_images(train_split(pgm_folder), SIZE, IntensityRule("auto"), settings)
    assert refreshed.status == "refreshed" and decoded == [last]
    fresh = open_images(train_split(pgm_folder), SIZE, IntensityRule("auto"),
                        CacheSettings(directory=str(tmp_path / "fresh"), progress=False))
    assert np.array_equal(refreshed.array, fresh.array) and refreshed.array.dtype == fresh.array.dtype
    assert not list((settings.root / "images").glob("*.tmp")) and not list(settings.root.rglob(".*.tmp"))


@pytest.mark.parametrize("kind", ["pgm-16", "png-uncompressed"])
def test_edit_in_the_middle_of_a_file_larger_than_the_probe_is_seen(tmp_path, settings, kind):
    """Past 2 x 64 KiB the probe skips the middle: an uncompressed PGM (or DICOM) is hashed whole again, a PNG is
    decided by its tail (the zlib checksum of every row)."""
    from txkit.data.cache import PROBE_BYTES, fingerprint

    rng = np.random.default_rng(2)
    root = tmp_path / "big"
    paths = []
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 65536, (300, 300), dtype=np.uint16)
            path = root / name / (f"{i}.pgm" if kind == "pgm-16" else f"{i}.png")
            write_pgm(path, pixels) if kind == "pgm-16" else Image.fromarray(pixels).save(path, compress_level=0)
            paths.append(path)
    assert os.path.getsize(paths[0]) > 2 * PROBE_BYTES
    assert bool(fingerprint(paths[0])["probe_decides"]) == (kind != "pgm-16")
    split = train_split(root)
    first = TensorSplit(split, SIZE, "multiclass", cache=settings)
    old = first[0][0].clone()
    before = Path(split.sources[0]).read_bytes()

    def rewrite(path):
        pixels = np.asarray(Image.open(path)).astype(np.uint16)  # PIL opens a 16-bit PGM as mode I
        pixels[140:160] = 65535 - pixels[140:160]  # rows in the middle of the file only
        write_pgm(path, pixels) if kind == "pgm-16" else Image.fromarray(pixels).save(path, compress_level=0)

    rewrite_keeping_size_and_mtime(split.sources[0], rewrite)
    after = Path(split.sources[0]).read_bytes()
    if kind == "pgm-16":  # the probe windows alone cannot see this edit
        assert before[:PROBE_BYTES] == after[:PROBE_BYTES] and before[-PROBE_BYTES:] == after[-PROBE_BYTES:]
    again = TensorSplit(train_split(root), SIZE, "multiclass", cache=settings)
    assert again.cache_status == "refreshed" and not torch.equal(again[0][0], old)
    assert_same(TensorSplit(train_split(root), SIZE, "multiclass"), again)


def test_png_whose_chunks_before_the_pixels_outgrow_the_probe_is_hashed_whole(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    from txkit.data.cache import fingerprint

    pixels = np.random.default_rng(3).integers(0, 65536, (300, 300), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "plain.png", compress_level=0)
    text = PngInfo()
    text.add_text("comment", "x" * 70_000)  # 70 kB of text before the first IDAT chunk
    Image.fromarray(pixels).save(tmp_path / "text.png", compress_level=0, pnginfo=text)
    assert fingerprint(tmp_path / "plain.png")["probe_decides"]
    assert not fingerprint(tmp_path / "text.png")["probe_decides"]


def _damage(images, key, how, monkeypatch):
    data, header = images / f"{key}.npy", images / f"{key}.json"
    if how == "truncated-npy":
        data.write_bytes(data.read_bytes()[:-100])
    elif how == "garbage-json":
        header.write_bytes(b"\x00{not json")
    elif how == "json-missing-fields":
        fields = {"format": json.loads(header.read_text())["format"], "bytes": data.stat().st_size}
        header.write_text(json.dumps(fields))
    elif how == "npy-header-garbage":  # right size, the .npy header destroyed
        raw = bytearray(data.read_bytes())
        raw[10:60] = b"x" * 50
        data.write_bytes(bytes(raw))
    elif how == "npy-missing":
        data.unlink()
    elif how == "fingerprints-garbage":
        next(images.glob(f"{key}.fingerprints.npy")).write_bytes(b"garbage")
    elif how == "npy-unreadable":  # as a file without read permission (root reads anything): until replaced
        real, inode = np.load, data.stat().st_ino

        def refusing(path, *args, **kwargs):
            if str(path) == str(data) and os.stat(path).st_ino == inode:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(np, "load", refusing)


@pytest.mark.parametrize("how", ["truncated-npy", "garbage-json", "json-missing-fields", "npy-header-garbage",
                                 "npy-missing", "fingerprints-garbage", "npy-unreadable"])
def test_damaged_cache_is_rebuilt_with_a_warning(folder, settings, capsys, monkeypatch, how):
    split = train_split(folder)
    key = TensorSplit(split, SIZE, "multiclass", cache=settings).store.header["key"]
    images = settings.root / "images"
    with monkeypatch.context() as patch:
        _damage(images, key, how, patch)
        capsys.readouterr()
        rebuilt = TensorSplit(split, SIZE, "multiclass", cache=settings)
    assert rebuilt.cache_status == "built"
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "damaged image cache" in lines[0], lines
    assert key in lines[0] and "txkit bug" not in lines[0]
    assert_same(TensorSplit(split, SIZE, "multiclass"), rebuilt)
    later = TensorSplit(split, SIZE, "multiclass", cache=settings)  # repaired for good: later runs hit
    assert later.cache_status == "hit" and not capsys.readouterr().err.strip()
    assert len(list_caches(settings.root)) == 1


def test_cli_rebuilds_a_damaged_cache_and_lists_around_it(folder, settings):
    import txkit.data.cache as images_module

    runner = CliRunner()
    build = ["cache", "imagefolder", "--data-root", str(folder), "--image-size", "16", "--cache-dir",
             str(settings.root)]
    assert runner.invoke(data_group, build).exit_code == 0
    headers = sorted((settings.root / "images").glob("*.json"))
    data_bytes = headers[0].with_suffix(".npy").stat().st_size  # a header of this format without its other fields
    headers[0].write_text(json.dumps({"format": images_module.FORMAT_VERSION, "bytes": data_bytes}))
    listed = runner.invoke(data_group, ["cache", "--list", "--cache-dir", str(settings.root)])
    assert listed.exit_code == 0 and "2 cache(s)" in listed.output, listed.output
    again = runner.invoke(data_group, [*build, "--json"])
    assert again.exit_code == 0 and "txkit bug" not in again.output, again.output
    assert "damaged image cache" in again.output
    report = json.loads(again.output[again.output.index("{"):])
    assert sorted(s["status"] for s in report["splits"]) == ["built", "hit", "hit"]


def test_unwritable_cache_folder_names_the_folder_and_both_fixes(folder, tmp_path):
    from txkit.errors import for_cli

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as caught:
        TensorSplit(train_split(folder), SIZE, "multiclass", cache=CacheSettings(directory=str(blocker)))
    line = for_cli(str(caught.value))
    assert str(blocker / "images") in line and "--cache-dir" in line and "--no-image-cache" in line
    assert "\n" not in line
    result = CliRunner().invoke(data_group, ["cache", "imagefolder", "--data-root", str(folder), "--image-size",
                                             "16", "--cache-dir", str(blocker)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(blocker / "images") in errors[0] and "--cache-dir" in errors[0]
    assert "--no-image-cache" not in errors[0]  # `txkit data cache` builds the cache: no off switch there
