"""The decode-once image cache: a file-backed split's decoded, resized images in one memory-mapped ``.npy``.

Key: sha256 over every image's (absolute path, size in bytes, mtime in ns) in split order, the image size, the
intensity rule's key, the resize rule (with Pillow's version), the format version and the split's declared
per-image transform (``Split.transform_key``, e.g. a dataset's crop; absent from the key when the split has none),
so an edited, added, removed or reordered file, or a changed transform, gives a new key. The stored dtype (uint8,
or float32 when the rule gives floats) follows from the rule and the files, and is recorded in the header.

Content: (size, mtime) miss a file rewritten in place with the same size and mtime (an uncompressed PGM or DICOM
rewritten, ``cp -p``, ``rsync -t``), so the cache also records each file's fingerprint when it decodes it: size,
mtime, a blake2b of the whole file and a probe (CRC-32s of the first and last ``PROBE_BYTES``). Every reuse
compares size, mtime and probe, reading at most 2 x 64 KiB per file; a file too large for the probe to cover is
re-hashed whole, unless it is a PNG whose probe holds everything before the image data and the end of it (the
zlib stream's checksum of every pixel row lies in the tail). A changed file is re-decoded into a copy of the cache
(a one-line warning names it): the cache is never served stale.

Files in ``ROOT/images``: ``KEY.npy`` (the images), ``KEY.fingerprints.npy`` (one record per file),
``KEY.json`` (the header, written last: the complete-marker; it records the fingerprint file's size and hash),
``KEY.lock`` (``flock``: one process builds, others wait and then read). A build writes ``KEY.*.tmp`` in the
same folder, fsyncs it and renames it; a killed build leaves only a temp file, which is never read and is removed
by the next build of that key or ``txkit data cache --clear``. A damaged cache (truncated or unreadable files, a
header that does not parse or does not match its files) is rebuilt with a one-line warning.

Splits without ``sources`` (synthetic and ``.npz`` datasets, whose images are already in memory) are not
cached on disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from txkit.datasets.pixels import as_float, resize_rule
from txkit.errors import DataError
from txkit.storage import NO_SPACE, WriteError, atomic_write_bytes, free_bytes, fsync_dir, human_bytes

FORMAT_VERSION = 2  # 2: per-file content fingerprints (KEY.fingerprints.npy); version-1 caches get new keys
IMAGES = "images"
FINGERPRINTS = "fingerprints.npy"
PROBE_BYTES = 64 * 1024  # changing it changes what a probe means: bump FORMAT_VERSION with it
FINGERPRINT = np.dtype([("size", "<i8"), ("mtime_ns", "<i8"), ("probe", "u1", (8,)), ("content", "u1", (32,)),
                        ("probe_decides", "?")])
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


class CacheFolderError(DataError):
    """The image cache folder cannot be created or written (permissions, a read-only or full disk)."""

    def __init__(self, folder: Path, exc: BaseException, creating: bool = False):
        cause = exc if isinstance(exc, OSError) else exc.__context__  # storage's WriteError keeps the OSError
        self.folder, self.creating = folder, creating
        self.reason = getattr(cause, "strerror", None) or str(cause or exc)
        self.full = getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(self.message())

    def message(self, off_switch: bool = True) -> str:
        """The one line; ``off_switch`` False leaves out turning the cache off (`txkit data cache` builds it)."""
        fix = "free disk space, set `cache_dir` to another folder" if self.full else \
            "set `cache_dir` to a writable folder"
        fix += " or turn off `image_cache`" if off_switch else ""
        what = "create the image cache folder" if self.creating else "write the image cache"
        return f"{self.folder}: cannot {what} ({self.reason}); {fix}"


def cache_root(directory: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else ``$TXKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/txkit`` (default ``~/.cache/txkit``)."""
    if directory:
        return Path(directory).expanduser()
    if os.environ.get("TXKIT_CACHE_DIR"):
        return Path(os.environ["TXKIT_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "txkit"


def cache_key(sources, size: int, rule_key: str, transform_key: str | None = None) -> str:
    return _key_and_stats(sources, size, rule_key, transform_key)[0]


def _key_and_stats(sources, size: int, rule_key: str, transform_key: str | None = None):
    """The key and every file's (size, mtime_ns) as two int64 arrays, from one stat per file."""
    settings = {"format": FORMAT_VERSION, "size": int(size), "rule": rule_key, "resize": resize_rule(),
                "count": len(sources)}
    if transform_key is not None:
        settings["transform"] = str(transform_key)
    digest = hashlib.sha256(json.dumps(settings).encode())
    sizes, mtimes = np.empty(len(sources), np.int64), np.empty(len(sources), np.int64)
    for index, source in enumerate(sources):
        path = os.path.abspath(source)
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise _Unreadable(index, source, exc) from None
        sizes[index], mtimes[index] = stat.st_size, stat.st_mtime_ns
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest(), (sizes, mtimes)


class _Unreadable(Exception):
    def __init__(self, index: int, source, exc: OSError):
        super().__init__(index)
        self.index, self.source, self.exc = index, source, exc


def _split_key(split, size: int, rule):
    """The key and the files' stats, or the dataset's own error for a missing file."""
    try:
        return _key_and_stats(split.sources, size, rule.key, getattr(split, "transform_key", None))
    except _Unreadable as missing:
        _source_error(split, missing.index, size, rule, missing.exc)


def _source_error(split, index: int, size: int, rule, exc: OSError):
    """Raise the dataset's own error for a source file that cannot be read (its message knows the dataset's
    advice), else a DataError naming the file: never the cache folder's error."""
    from txkit.datasets.intensity import load_input

    load_input(split, index, size, rule)
    raise DataError(f"{split.sources[index]}: image file not found or unreadable ({exc.strerror or exc}); check "
                    f"`data_root` or pass `skip_bad_images` to skip it") from None


# --- fingerprints: what a file held when its image was decoded ------------------------------------------------
def _probe_digest(data: bytes, tail: bytes | None = None) -> bytes:
    """CRC-32 of the first ``PROBE_BYTES`` and CRC-32 of the last (``tail``; for a file of at most two windows,
    ``data`` is the whole file and the second CRC covers what follows the first window). A checksum, not a
    cryptographic hash: a probe detects accidents, and CRC-32 runs about 4x faster than blake2b, which at
    2 x 64 KiB per file would be most of a reuse check's cost. It misses no change of up to 32 consecutive bits
    and a random change with probability 2^-32 per window; the PNG rule below rests on the image's Adler-32, no
    stronger."""
    head, tail = (data[:PROBE_BYTES], data[PROBE_BYTES:]) if tail is None else (data, tail)
    return zlib.crc32(head).to_bytes(4, "little") + zlib.crc32(tail).to_bytes(4, "little")


def fingerprint(path) -> np.ndarray:
    """One file's record (a 0-d ``FINGERPRINT`` array) from a single read of the whole file; the decoder that
    reads it next finds it in the page cache, so the build reads each file from disk once."""
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        data = handle.read()
    record = np.zeros((), FINGERPRINT)
    record["size"], record["mtime_ns"] = len(data), stat.st_mtime_ns
    if len(data) != stat.st_size:  # written while we read: a record that can never match, so it is re-read
        record["size"] = -1
    whole = len(data) <= 2 * PROBE_BYTES
    probe = _probe_digest(data) if whole else _probe_digest(data[:PROBE_BYTES], data[-PROBE_BYTES:])
    record["probe"] = np.frombuffer(probe, np.uint8)
    record["content"] = np.frombuffer(hashlib.blake2b(data, digest_size=32).digest(), np.uint8)
    record["probe_decides"] = whole or _png_probe_decides(data)
    return record


def _png_probe_decides(data: bytes) -> bool:
    """Whether the two probe windows of this PNG cover every byte that decides its pixels but the compressed rows:
    the header chunks (IHDR, PLTE, tRNS all precede the first IDAT) and the end of the last IDAT, where the zlib
    stream's Adler-32 of every (filtered) pixel row sits. A change to any pixel then changes a probed byte."""
    if not data.startswith(PNG_SIGNATURE):
        return False
    position, first, last_end = len(PNG_SIGNATURE), None, None
    while position + 8 <= len(data):
        length, kind = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8]
        end = position + 12 + length  # length, type, data, CRC
        if end > len(data):
            return False
        if kind == b"IDAT":
            first = position if first is None else first
            last_end = end
        elif kind == b"IEND":
            break
        position = end
    return first is not None and first + 8 <= PROBE_BYTES and last_end - 8 >= len(data) - PROBE_BYTES


def _probe(path: str, size: int) -> bytes:
    """The probe of a file of ``size`` bytes: 2 reads of ``PROBE_BYTES`` at most (one for a small file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if size <= 2 * PROBE_BYTES:
            return _probe_digest(os.pread(fd, size, 0))  # a short read (the file shrank) cannot match
        return _probe_digest(os.pread(fd, PROBE_BYTES, 0), os.pread(fd, PROBE_BYTES, size - PROBE_BYTES))
    finally:
        os.close(fd)


def _content(path: str) -> bytes:
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def changed_files(sources, stats, prints: np.ndarray) -> list[int]:
    """Indices of the files whose content may differ from their record in ``prints``: size or mtime differ (from
    ``stats``, the key's stat), else the probe differs, else (where the probe cannot decide) the whole-file hash
    differs; a file that cannot be read counts as changed. Files are checked on a few threads (reads and hashing
    release the GIL; on a network file system the reads overlap)."""
    sizes, mtimes = stats
    moved = (prints["size"] != sizes) | (prints["mtime_ns"] != mtimes)
    probes, contents = prints["probe"].tobytes(), prints["content"].tobytes()
    decides = prints["probe_decides"]

    def differs(index: int) -> bool:
        try:
            if decides[index]:
                return _probe(os.fspath(sources[index]), int(sizes[index])) != probes[8 * index:8 * index + 8]
            return _content(os.fspath(sources[index])) != contents[32 * index:32 * index + 32]
        except OSError:
            return True

    def check(indices) -> list[int]:
        return [int(i) for i in indices if differs(int(i))]

    candidates = np.flatnonzero(~moved)
    threads = min(8, os.cpu_count() or 1, max(1, len(candidates) // 256))
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            found = [i for part in pool.map(check, np.array_split(candidates, 4 * threads)) for i in part]
    else:
        found = check(candidates)
    return sorted(np.flatnonzero(moved).tolist() + found)


# --- the store and its files ---------------------------------------------------------------------------------
class ImageStore:
    """Read-only view of one built cache; the memmap opens lazily in each process (DataLoader workers too),
    so a pickled store carries only its path."""

    def __init__(self, path: Path, header: dict, status: str, array: np.ndarray | None = None):
        self.path, self.header, self.status = Path(path), header, status
        self._array, self._pid = array, os.getpid() if array is not None else None

    @property
    def array(self) -> np.ndarray:
        if self._array is None or self._pid != os.getpid():
            self._array, self._pid = np.load(self.path, mmap_mode="r"), os.getpid()
        return self._array

    def __len__(self) -> int:
        return int(self.header["images"])

    def __getstate__(self):
        return {**self.__dict__, "_array": None, "_pid": None}


@dataclass
class _Found:
    """What ``KEY.*`` holds: a sound cache (``store``, ``prints``), nothing (all None: never built, or a build
    killed before its header) or a damaged cache (``problem``: why, for the warning)."""

    store: ImageStore | None = None
    prints: np.ndarray | None = None
    problem: str | None = None


def open_images(split, size: int, rule, settings: CacheSettings | None, label: str = "") -> ImageStore | None:
    """The cache of ``split`` at ``size`` under ``rule``, built now if missing, rebuilt if damaged, its changed
    images re-decoded; None where no disk cache applies (off, or a split without source files)."""
    if settings is None or not settings.enabled or split.sources is None or not len(split):
        return None
    folder = settings.root / IMAGES
    key, stats = _split_key(split, size, rule)
    found = _inspect(folder, key, len(split), size)
    if found.store is not None and not changed_files(split.sources, stats, found.prints):
        return found.store
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheFolderError(folder, exc, creating=True) from None
    need = cache_bytes(len(split), size, rule)
    try:
        with _locked(folder / f"{key}.lock", label or key[:12], settings.progress):
            # another process may have built, repaired or refreshed it while we waited
            found = _inspect(folder, key, len(split), size)
            changed = changed_files(split.sources, stats, found.prints) if found.store is not None else []
            if found.store is not None and not changed:
                return found.store
            store = None
            if found.store is not None:
                _warn(_changed_message(split, changed, label, stats, found.prints))
                store = _refresh(split, size, rule, folder, key, found, changed)
            elif found.problem:
                _warn(f"{folder / key}.*: damaged image cache: {found.problem}; rebuilding it")
            if store is None:
                _remove_temps(folder, key)  # left by a killed build: only the lock holder builds
                _check_space(folder, need, label)
                _build(split, size, rule, folder, key, label, settings.progress)
                store = _inspect(folder, key, len(split), size, "built").store
    except (OSError, WriteError) as exc:  # image files' errors are DataErrors; these are the cache folder's
        cause = exc if isinstance(exc, OSError) else exc.__context__  # storage's WriteError keeps the OSError
        if getattr(cause, "errno", None) in NO_SPACE:
            raise _no_space(folder, need, label, cause.strerror) from None
        raise CacheFolderError(folder, exc) from None
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


def _changed_message(split, changed: list[int], label: str, stats, prints: np.ndarray) -> str:
    first = split.sources[changed[0]]
    others = f" and {len(changed) - 1} other file(s)" if len(changed) > 1 else ""
    where = f" of {label}" if label else ""
    rows = np.asarray(changed)
    same = (prints["size"][rows] == stats[0][rows]).all() and (prints["mtime_ns"][rows] == stats[1][rows]).all()
    though = ", though size and modification time are the same" if same else ""  # else: changed while it was read
    return f"{first}{others} changed since the image cache{where} was built{though}; re-decoding " + \
        ("them" if others else "it")


def _inspect(folder: Path, key: str, images: int | None = None, size: int | None = None,
             status: str = "hit") -> _Found:
    """Read and check ``KEY.*``: the header parses and matches this key (and ``images`` / ``size`` when given),
    the data file has the recorded size and an ``.npy`` header of the recorded shape and dtype, the fingerprint
    file has the recorded size and hash. Never raises for what the files hold."""
    header_path, data_path = folder / f"{key}.json", folder / f"{key}.npy"
    try:
        header = json.loads(header_path.read_bytes())
    except FileNotFoundError:
        return _Found()
    except OSError as exc:
        return _Found(problem=f"its .json header is unreadable: {exc.strerror or exc}")
    except ValueError:
        return _Found(problem="its .json header is not JSON")
    problem = _header_problem(header, key, images, size)
    if problem:
        return _Found(problem=f"its .json header has {problem}")
    try:
        found = data_path.stat().st_size
        if found != header["bytes"]:
            return _Found(problem=f"its .npy file has {found:,} bytes, the header says {header['bytes']:,}")
        array = np.load(data_path, mmap_mode="r")
    except FileNotFoundError:
        return _Found(problem="its .npy file is missing")
    except OSError as exc:
        return _Found(problem=f"its .npy file is unreadable: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - numpy's .npy parser raises assorted types on garbage
        return _Found(problem=f"its .npy header does not parse ({type(exc).__name__})")
    shape = (header["images"], header["size"], header["size"])
    if array.shape != shape or str(array.dtype) != header["dtype"] or not array.flags.c_contiguous:
        return _Found(problem=f"its .npy file holds {array.dtype} {array.shape}, the header says "
                              f"{header['dtype']} {shape}")
    try:
        prints = _read_fingerprints(folder / f"{key}.{FINGERPRINTS}", header)
    except FileNotFoundError:
        return _Found(problem=f"its .{FINGERPRINTS} file is missing")
    except OSError as exc:
        return _Found(problem=f"its .{FINGERPRINTS} file is unreadable: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - as above
        return _Found(problem=f"its .{FINGERPRINTS} file is damaged: {exc}")
    return _Found(ImageStore(data_path, header, status, array), prints)


def _header_problem(header, key: str, images: int | None, size: int | None) -> str | None:
    if not isinstance(header, dict):
        return "no fields"
    expected = {"format": int, "key": str, "images": int, "size": int, "dtype": str, "bytes": int,
                "fingerprints": dict}
    wrong = [name for name, kind in expected.items() if not isinstance(header.get(name), kind)]
    if wrong:
        return f"no valid {', '.join(wrong)}"
    if header["format"] != FORMAT_VERSION or header["key"] != key or header["dtype"] not in ("uint8", "float32"):
        return "another format, key or dtype"
    if (images is not None and header["images"] != images) or (size is not None and header["size"] != size):
        return f"{header['images']} images at {header['size']} px, not {images} at {size} px"
    record = header["fingerprints"]
    if not isinstance(record.get("bytes"), int) or not isinstance(record.get("blake2b"), str):
        return "no valid fingerprints record"
    return None


def _read_fingerprints(path: Path, header: dict) -> np.ndarray:
    data = path.read_bytes()
    record = header["fingerprints"]
    if len(data) != record["bytes"] or hashlib.blake2b(data, digest_size=16).hexdigest() != record["blake2b"]:
        raise ValueError("its size or hash differs from the header's")
    prints = np.load(io.BytesIO(data), allow_pickle=False)
    if prints.dtype != FINGERPRINT or prints.shape != (header["images"],):
        raise ValueError(f"{prints.shape} records of another layout")
    return prints


def _write_index(folder: Path, key: str, header: dict, prints: np.ndarray) -> None:
    """The fingerprints, then the header that names their size and hash (the complete-marker, so last)."""
    buffer = io.BytesIO()
    np.save(buffer, prints, allow_pickle=False)
    data = buffer.getvalue()
    atomic_write_bytes(folder / f"{key}.{FINGERPRINTS}", data)
    header = {**header, "fingerprints": {"bytes": len(data),
                                         "blake2b": hashlib.blake2b(data, digest_size=16).hexdigest()}}
    atomic_write_bytes(folder / f"{key}.json", json.dumps(header, indent=1).encode())


def _warn(message: str) -> None:
    _console().print(f"warning: {message}", style="yellow", markup=False, highlight=False, soft_wrap=True)


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
                _console().print(f"waiting for another process that is building the image cache of {label}",
                                 markup=False, highlight=False)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_temps(folder: Path, key: str) -> None:
    for temp in [*folder.glob(f"{key}.*.tmp"), *folder.glob(f".{key}.*.tmp")]:  # data file, header, fingerprints
        temp.unlink(missing_ok=True)


def _fingerprint_source(split, index: int, size: int, rule) -> np.ndarray:
    # Hashed before it is decoded: a file rewritten in between then fails its check at the next reuse and is
    # re-decoded, where hashing after decoding would record new content beside old pixels.
    try:
        return fingerprint(split.sources[index])
    except OSError as exc:
        _source_error(split, index, size, rule, exc)


def _build(split, size: int, rule, folder: Path, key: str, label: str, show: bool) -> None:
    from txkit.datasets.intensity import load_input

    n = len(split)
    writer = _Writer(folder, key, n, size)
    prints = np.zeros(n, FINGERPRINT)
    try:
        with _progress(f"caching {label or 'images'} ({n:,} at {size} px)", n, show) as advance:
            for index in range(n):
                prints[index] = _fingerprint_source(split, index, size, rule)
                writer.put(index, load_input(split, index, size, rule))
                advance()
        data = writer.commit(folder / f"{key}.npy")
        header = {"format": FORMAT_VERSION, "key": key, "label": label, "images": n, "size": int(size),
                  "dtype": writer.dtype, "rule": rule.key, "resize": resize_rule(), "bytes": data.stat().st_size,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "first_source": str(split.sources[0]),
                  "probe_bytes": PROBE_BYTES}
        if getattr(split, "transform_key", None) is not None:
            header["transform"] = split.transform_key
        _write_index(folder, key, header, prints)
    finally:
        writer.discard()


def _refresh(split, size: int, rule, folder: Path, key: str, found: _Found, changed: list[int]) -> ImageStore | None:
    """Re-decode only the ``changed`` images into a copy of the cache, renamed over it (a process reading the old
    file keeps reading it). None, for a full build instead, when more than half changed, or when an image now has
    another dtype than the cache: a full build would then store another dtype, and this must give its bytes."""
    from txkit.datasets.intensity import load_input

    store, prints = found.store, found.prints.copy()
    if len(changed) > len(split) // 2:
        return None
    images = {}
    for index in changed:
        prints[index] = _fingerprint_source(split, index, size, rule)
        images[index] = load_input(split, index, size, rule)
        if images[index].dtype != store.array.dtype:
            return None
    temp = folder / f"{key}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        shutil.copyfile(store.path, temp)  # a kernel copy (or a reflink): far cheaper than decoding them all
        offset, row = _Writer.offset_of(temp), size * size * store.array.dtype.itemsize
        with open(temp, "r+b") as handle:
            for index, image in images.items():
                handle.seek(offset + index * row)
                handle.write(np.ascontiguousarray(image).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        # Data before index: a crash in between leaves new pixels under old fingerprints, which fail their
        # check and are refreshed again; old pixels under new fingerprints could never be noticed.
        os.replace(temp, store.path)
        fsync_dir(folder)
    finally:
        temp.unlink(missing_ok=True)
    header = {k: v for k, v in store.header.items() if k != "fingerprints"}
    _write_index(folder, key, {**header, "refreshed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, prints)
    return _inspect(folder, key, len(split), size, "refreshed").store


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
        store = _inspect(folder, header_path.stem).store  # damaged ones are not listed; --clear removes them
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
