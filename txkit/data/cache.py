"""The decode-once image cache: a file-backed split's decoded, resized images in one memory-mapped ``.npy``.

Key: sha256 over every image's (absolute path, size in bytes, mtime in ns) in split order, the image size, the
intensity rule's key, the resize rule (with Pillow's version), the format version and the split's declared
per-image transform (``Split.transform_key``, e.g. a dataset's crop; absent from the key when the split has none,
so such keys are those of earlier versions), so an edited, added, removed or reordered file, or a changed
transform, gives a new key and is never served stale. The stored dtype (uint8, or float32 when
the rule gives floats) follows from the rule and the files, and is recorded in the header.

Files in ``ROOT/images``: ``KEY.npy`` (the images), ``KEY.json`` (the header, written last: the complete-marker),
``KEY.lock`` (``flock``: one process builds, others wait and then read). A build writes ``KEY.*.tmp`` in the
same folder, fsyncs it and renames it; a killed build leaves only a temp file, which is never read and is removed
by the next build of that key or ``txkit data cache --clear``.

Splits without ``sources`` (synthetic and ``.npz`` datasets, whose images are already in memory) are not
cached on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from txkit.datasets.pixels import as_float, resize_rule
from txkit.errors import DataError
from txkit.storage import NO_SPACE, atomic_write_bytes, free_bytes, fsync_dir, human_bytes

FORMAT_VERSION = 1
IMAGES = "images"
NPY_HEADER = 128  # np.lib.format's version 2.0 header, padded


@dataclass(frozen=True)
class CacheSettings:
    """``enabled``: use the disk cache (`image_cache`); ``directory``: its root (`cache_dir`), default
    :func:`cache_root`; ``progress``: show a progress bar on stderr while building."""

    enabled: bool = True
    directory: str | None = None
    progress: bool = True

    @property
    def root(self) -> Path:
        return cache_root(self.directory)


def cache_root(directory: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else ``$TXKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/txkit`` (default ``~/.cache/txkit``)."""
    if directory:
        return Path(directory).expanduser()
    if os.environ.get("TXKIT_CACHE_DIR"):
        return Path(os.environ["TXKIT_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "txkit"


def cache_key(sources, size: int, rule_key: str, transform_key: str | None = None) -> str:
    settings = {"format": FORMAT_VERSION, "size": int(size), "rule": rule_key, "resize": resize_rule(),
                "count": len(sources)}
    if transform_key is not None:
        settings["transform"] = str(transform_key)
    digest = hashlib.sha256(json.dumps(settings).encode())
    for index, source in enumerate(sources):
        path = os.path.abspath(source)
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise _Unreadable(index, source, exc) from None
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class _Unreadable(Exception):
    def __init__(self, index: int, source, exc: OSError):
        super().__init__(index)
        self.index, self.source, self.exc = index, source, exc


def _split_key(split, size: int, rule) -> str:
    """The key, or the dataset's own error for a missing file (its message knows the dataset's advice)."""
    from txkit.datasets.intensity import load_input

    try:
        return cache_key(split.sources, size, rule.key, getattr(split, "transform_key", None))
    except _Unreadable as missing:
        load_input(split, missing.index, size, rule)
        raise DataError(f"{missing.source}: image file not found or unreadable ({missing.exc.strerror}); check "
                        f"`data_root` or pass `skip_bad_images` to skip it") from None


class ImageStore:
    """Read-only view of one built cache; the memmap opens lazily in each process (DataLoader workers too),
    so a pickled store carries only its path."""

    def __init__(self, path: Path, header: dict, status: str):
        self.path, self.header, self.status = Path(path), header, status
        self._array, self._pid = None, None

    @property
    def array(self) -> np.ndarray:
        if self._array is None or self._pid != os.getpid():
            self._array, self._pid = np.load(self.path, mmap_mode="r"), os.getpid()
        return self._array

    def __len__(self) -> int:
        return int(self.header["images"])

    def __getstate__(self):
        return {**self.__dict__, "_array": None, "_pid": None}


def open_images(split, size: int, rule, settings: CacheSettings | None, label: str = "") -> ImageStore | None:
    """The cache of ``split`` at ``size`` under ``rule``, built now if missing; None where no disk cache applies
    (off, or a split without source files)."""
    if settings is None or not settings.enabled or split.sources is None or not len(split):
        return None
    folder = settings.root / IMAGES
    key = _split_key(split, size, rule)
    store = _ready(folder, key, "hit")
    if store is not None:
        return store
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the image cache folder ({exc.strerror}); set `cache_dir` to a "
                        f"writable folder or turn off `image_cache`") from None
    need = cache_bytes(len(split), size, rule)
    try:
        with _locked(folder / f"{key}.lock", label or key[:12], settings.progress):
            store = _ready(folder, key, "hit")  # another process may have built it while we waited
            if store is None:
                _remove_temps(folder, key)  # left by a killed build: only the lock holder builds
                _check_space(folder, need, label)
                _build(split, size, rule, folder, key, label, settings.progress)
                store = _ready(folder, key, "built")
    except OSError as exc:  # image files' errors are DataErrors; these are the cache folder's
        if exc.errno in NO_SPACE:
            raise _no_space(folder, need, label, exc.strerror) from None
        raise DataError(f"{folder}: cannot write the image cache ({exc.strerror or exc}); free disk space, "
                        f"set `cache_dir` to another folder or turn off `image_cache`") from None
    if store is None:
        raise DataError(f"{folder}: the image cache {key[:12]} was built but cannot be read back; free disk "
                        f"space or turn off `image_cache`")
    return store


def cache_bytes(n: int, size: int, rule) -> int:
    """The size of a cache file: n images of size x size in the rule's dtype, plus the .npy header (a rule that
    keeps 8-bit grey may still meet a float image and turn the file into float32: that one is found writing)."""
    itemsize = np.dtype(rule.dtype or np.uint8).itemsize
    return n * size * size * itemsize + NPY_HEADER


def _check_space(folder: Path, need: int, label: str) -> None:
    """Refuse a build the disk has no room for before writing anything (the header is written last, so a build
    that fills the disk would otherwise be found only at its end)."""
    free = free_bytes(folder)
    if free is not None and free < need:
        raise _no_space(folder, need, label)


def _no_space(folder: Path, need: int, label: str, reason: str = "not enough free space") -> DataError:
    what = f"the image cache of {label}" if label else "the image cache"
    free = free_bytes(folder)
    room = f", {human_bytes(free)} is free" if free is not None else ""
    return DataError(f"{folder}: cannot write {what} ({reason}: it needs {human_bytes(need)}{room}); free disk "
                     f"space, set `cache_dir` to another folder or turn off `image_cache`")


def _ready(folder: Path, key: str, status: str) -> ImageStore | None:
    """A complete cache: its header parses, has this format and the data file has the recorded size."""
    header_path, data_path = folder / f"{key}.json", folder / f"{key}.npy"
    try:
        header = json.loads(header_path.read_text())
        complete = header.get("format") == FORMAT_VERSION and data_path.stat().st_size == header.get("bytes")
    except (OSError, ValueError, AttributeError):
        return None
    return ImageStore(data_path, header, status) if complete else None


@contextlib.contextmanager
def _locked(path: Path, label: str, show: bool):
    try:
        import fcntl
    except ImportError:  # no flock (Windows): concurrent builders each write their own temp file; last rename wins
        yield
        return
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if show:
                _console().print(f"waiting for another process that is building the image cache of {label}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_temps(folder: Path, key: str) -> None:
    for temp in [*folder.glob(f"{key}.*.tmp"), *folder.glob(f".{key}.*.tmp")]:  # data file, header
        temp.unlink(missing_ok=True)


def _build(split, size: int, rule, folder: Path, key: str, label: str, show: bool) -> None:
    from txkit.datasets.intensity import load_input

    n = len(split)
    writer = _Writer(folder, key, n, size)
    try:
        with _progress(f"caching {label or 'images'} ({n:,} at {size} px)", n, show) as advance:
            for index in range(n):
                writer.put(index, load_input(split, index, size, rule))
                advance()
        data = writer.commit(folder / f"{key}.npy")
        header = {"format": FORMAT_VERSION, "key": key, "label": label, "images": n, "size": int(size),
                  "dtype": writer.dtype, "rule": rule.key, "resize": resize_rule(), "bytes": data.stat().st_size,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "first_source": str(split.sources[0])}
        if getattr(split, "transform_key", None) is not None:
            header["transform"] = split.transform_key
        atomic_write_bytes(folder / f"{key}.json", json.dumps(header, indent=1).encode())
    finally:
        writer.discard()


class _Writer:
    """Images appended in order to a temp ``.npy`` of the first image's dtype (plain writes, so a full disk is an
    OSError, not a crash); a float32 image arriving in a uint8 file turns the file into float32, earlier images
    scaled by the loader's own 1/255 so that tensors stay identical."""

    def __init__(self, folder: Path, key: str, n: int, size: int):
        self.folder, self.key, self.n, self.size = folder, key, n, size
        self.temp: Path | None = None
        self.handle = None
        self.dtype = None
        self.offset = 0

    def _open(self, dtype: str) -> None:
        self.temp = self.folder / f"{self.key}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        self.dtype = dtype
        self.handle = open(self.temp, "wb")
        np.lib.format.write_array_header_2_0(self.handle, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                           "shape": (self.n, self.size, self.size)})
        self.offset = self.handle.tell()

    def put(self, index: int, image: np.ndarray) -> None:
        if image.shape != (self.size, self.size):
            raise DataError(f"image {index}: the intensity rule gave shape {image.shape}, expected "
                            f"({self.size}, {self.size}); this is a txkit bug, please report it")
        dtype = "uint8" if image.dtype == np.uint8 else "float32"
        if self.handle is None:
            self._open(dtype)
        elif dtype != self.dtype and self.dtype == "uint8":
            self._promote(index)
        if self.dtype == "float32":
            image = as_float(image) if dtype == "uint8" else np.asarray(image, dtype=np.float32)
        self.handle.write(np.ascontiguousarray(image).tobytes())

    def _promote(self, done: int) -> None:
        self.handle.close()
        old = self.temp
        self._open("float32")
        written = np.memmap(old, dtype=np.uint8, mode="r", offset=self.offset_of(old),
                            shape=(done, self.size, self.size))
        for start in range(0, done, 1024):
            self.handle.write(as_float(np.asarray(written[start:start + 1024])).tobytes())
        del written
        old.unlink(missing_ok=True)

    @staticmethod
    def offset_of(path: Path) -> int:
        with open(path, "rb") as handle:
            np.lib.format.read_magic(handle)
            np.lib.format.read_array_header_2_0(handle)
            return handle.tell()

    def commit(self, final: Path) -> Path:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.temp, final)
        self.temp = None
        fsync_dir(final.parent)
        return final

    def discard(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)



def _console():
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def _progress(description: str, total: int, show: bool):
    if not show:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=_console(), transient=True, refresh_per_second=4) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


# --- listing and clearing (txkit data cache --list / --clear) -------------------------------------------------
def list_caches(root: Path) -> list[dict]:
    """Headers of the complete caches under ``root``, oldest first."""
    folder = Path(root) / IMAGES
    out = []
    for header_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        store = _ready(folder, header_path.stem, "hit")
        if store is not None:
            out.append(store.header)
    return sorted(out, key=lambda h: h.get("created", ""))


def clear_caches(root: Path, older_than_days: float | None = None) -> tuple[int, int]:
    """Remove caches (all, or those created more than ``older_than_days`` ago) and leftover temp files whose
    build is not running; a cache another process is building is kept. Returns (caches removed, bytes freed)."""
    folder = Path(root) / IMAGES
    if not folder.is_dir():
        return 0, 0
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    keys = {p.name.split(".")[0] for p in folder.iterdir() if p.is_file()}
    removed, freed = 0, 0
    for key in sorted(keys):
        files = [p for p in folder.iterdir() if p.name.split(".")[0] == key and not p.name.endswith(".lock")]
        if cutoff is not None and any(p.stat().st_mtime > cutoff for p in files):
            continue
        if _busy(folder / f"{key}.lock"):
            continue
        removed += (folder / f"{key}.json").exists()
        for path in files + [folder / f"{key}.lock"]:
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
    return removed, freed


def _busy(lock: Path) -> bool:
    if not lock.exists():
        return False
    try:
        import fcntl
    except ImportError:
        return False
    with open(lock, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
