"""Shared helpers for datasets read from image files: listing, verifying, seeded group-aware splits."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from txkit.datasets.base import Split, TxDataset, load_gray, read_intensity
from txkit.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".dcm"}
# Advice for datasets read from files: every one of them takes skip_bad_images (--skip-bad-images).
MISSING_ADVICE = "check `data_root` or pass `skip_bad_images` to skip it"
UNREADABLE_ADVICE = "replace the file or pass `skip_bad_images` to skip it"


def load_image(path: str | Path, missing: str = MISSING_ADVICE) -> np.ndarray:
    """:func:`load_gray` with the advice of a dataset read from files."""
    return load_gray(path, missing=missing, unreadable=UNREADABLE_ADVICE)


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, sorted: known suffixes (``.dcm`` included) and extension-less DICOM files
    (132 bytes read per extension-less file to find the ``DICM`` magic); hidden files are skipped when extension-less."""
    from txkit.datasets.dicom import is_dicom

    def wanted(p: Path) -> bool:
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return p.is_file()
        return not p.suffix and not p.name.startswith(".") and p.is_file() and is_dicom(p)

    return sorted(p for p in folder.rglob("*") if wanted(p))


def require_dir(root: str | None, layout: str) -> Path:
    if not root:
        raise DataError(f"this dataset needs `data_root`; expected layout: {layout}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: folder not found; `data_root` must point to: {layout}")
    return path


def readable(path: Path) -> bool:
    try:
        load_gray(path)
        return True
    except DataError:
        return False


def opens(path: str | Path) -> bool:
    """Whether an image file's header reads, without decoding its pixels: PIL's open and ``verify`` (for PNG
    that checks every chunk's checksum, so a truncated PNG fails too; JPEG and TIFF stop at the header), the
    DICOM header for DICOM. Cheap enough for every image of a dataset before a run starts."""
    from PIL import Image

    from txkit.datasets.dicom import is_dicom, read_header

    try:
        if is_dicom(path):
            read_header(path)
            return True
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001 - any failure means "read it in full to find out"
        return False


def check_images(dataset: TxDataset, skip: bool = False) -> int:
    """Open every image file of every split (:func:`opens`), so that an unreadable image stops a run before
    its first epoch, whichever split holds it (the test split is otherwise first read after the last epoch).

    A file that does not open is read in full by its split, so the error is the dataset's own (naming the file
    and its advice) and a file only the header check mistrusts is kept. With ``skip`` (`skip_bad_images`) the
    unreadable images are dropped from their split and counted in ``info["skipped_images"]`` instead; returns
    how many. Splits without files (images in memory) need no check.
    """
    checked: dict[int, Split] = {}  # a split reused whole (val = test) is checked once and stays one object
    dropped = 0
    for name, split in list(dataset.splits.items()):
        if split.sources is None:
            continue
        if id(split) not in checked:
            bad = _unreadable(split, skip)
            dropped += len(bad)
            checked[id(split)] = split.subset([i for i in range(len(split)) if i not in bad]) if bad else split
        dataset.splits[name] = checked[id(split)]
    if dropped:
        dataset.info["skipped_images"] = dataset.info.get("skipped_images", 0) + dropped
    return dropped


def _unreadable(split: Split, skip: bool) -> set[int]:
    bad = set()
    for index, source in enumerate(split.sources):
        if opens(source):
            continue
        try:
            split.image(index)
        except DataError as exc:
            if not skip:
                message = str(exc)
                if "skip_bad_images" not in message:
                    message += "; or pass `skip_bad_images` to skip it"
                raise DataError(message) from None
            bad.add(index)
    return bad


def drop_unreadable(paths: list[Path], *columns: Sequence) -> tuple[list[Path], list, int]:
    """Open every image once and keep only the readable ones (for `skip_bad_images`)."""
    keep = [i for i, p in enumerate(paths) if readable(p)]
    kept_columns = [[column[i] for i in keep] for column in columns]
    return [paths[i] for i in keep], kept_columns, len(paths) - len(keep)


def file_split(paths: Sequence[str | Path], labels, groups=None, missing: str = MISSING_ADVICE, *,
               ids: Sequence[str] | None = None, studies: Sequence[str] | None = None,
               transform: Callable[[np.ndarray], np.ndarray] | None = None, transform_key: str | None = None,
               metadata: dict[str, Sequence] | None = None) -> Split:
    """A :class:`Split` whose images are the files ``paths`` (one per label): the way to build a file-backed split.

    The split reads each file as txkit reads any image file (:func:`load_gray` for ``image``,
    :func:`read_intensity` for the intensity rules: DICOM in modality units, 16-bit kept) and names the files as
    its ``sources``, so training, evaluation and ``txkit data cache`` keep it in the decode-once disk image
    cache (:mod:`txkit.data.cache`) and loader workers hand its batches over through the shared-memory ring.

    ``groups`` are patients, ``ids`` the images' names (default: the paths as given), ``studies`` optional study
    ids. ``transform(values) -> values`` is a deterministic per-image change applied to the stored values after
    reading, before the intensity rule: a crop, pad or resize (it receives ``uint8`` arrays for 8-bit files,
    ``float64`` for 16-bit, float and DICOM ones, and keeps their units). It needs ``transform_key``, a string
    naming it and its parameters (``"centre-crop:200,resize:224"``) that enters the cache key: change the
    parameters, change the key, or the cache serves images made by the old transform. A dataset that changes
    pixels in its own ``load`` and builds :class:`Split` itself without ``sources`` is not disk-cached.
    ``missing`` is the advice appended to a missing file's error. ``metadata``: per-image columns for subgroup
    analysis (:class:`Split`).
    """
    if transform is not None and not transform_key:
        raise TypeError("file_split(transform=...) needs transform_key: a string naming the transform and its "
                        "parameters, which enters the image cache's key")
    if transform_key is not None and transform is None:
        raise TypeError("file_split(transform_key=...) names a transform, but no transform is given")
    paths = list(paths)
    names = [str(p) for p in paths]

    def load(i: int) -> np.ndarray:
        image = load_image(paths[i], missing)
        return image if transform is None else transform(image)

    def read(i: int) -> tuple[np.ndarray, dict]:
        values, info = read_intensity(paths[i], missing, UNREADABLE_ADVICE)
        return (values, info) if transform is None else (transform(values), info)

    return Split(load, np.asarray(labels), groups, names if ids is None else ids, studies, read=read,
                 sources=names, transform_key=transform_key, metadata=metadata)


def group_split(n: int, groups: Sequence | None, strata: np.ndarray, seed: int,
                val: float = 0.15, test: float = 0.15) -> dict[str, np.ndarray]:
    """Seeded train/val/test indices; all images of one group (patient) land in the same split.

    Groups are dealt to splits per stratum (the group's first label), so class proportions are kept.
    """
    groups = np.asarray(groups) if groups is not None else np.arange(n).astype(str)
    unique, first = np.unique(groups, return_index=True)
    rng = np.random.default_rng(seed)
    assignment = {}
    for value in np.unique(strata[first]):
        members = rng.permutation(unique[strata[first] == value])
        n_test, n_val = int(round(test * len(members))), int(round(val * len(members)))
        if len(members) >= 3:
            n_test, n_val = max(n_test, 1 if test else 0), max(n_val, 1 if val else 0)
        for i, g in enumerate(members):
            assignment[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    where = np.array([assignment[g] for g in groups])
    return {name: np.flatnonzero(where == name) for name in ("train", "val", "test")}


def as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
