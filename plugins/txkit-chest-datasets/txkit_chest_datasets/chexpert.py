"""`chexpert`: CheXpert-v1.0-small exactly as distributed (Irvin et al. 2019).

Splits follow the thesis (Piano 2020) unless ``val_fraction`` is set: train = every row of train.csv that passes
the filters (all 223,414 rows by default, the "100 %" of Table 4.2); val = test = valid.csv, because the thesis
keeps the checkpoint with the best AUC on valid.csv and reports that AUC. With ``val_fraction=F`` a seeded,
patient-disjoint fraction of train.csv's patients becomes val and valid.csv is used only as the test split.

Indexing reads the two CSVs with the csv module (no image is opened): about a second for 223,414 rows.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from txkit import (DataError, Split, TxDataset, bin_ages, file_split, group_split, parse_age_bins, readable,
                   require_dir, subgroup_values, validate_options)
from txkit_chest_datasets import policies as pol
from txkit_chest_datasets.options import ChexpertOptions, as_names

NAME = "chexpert"
LAYOUT = ("CheXpert-v1.0-small/ holding train.csv, valid.csv, train/patientNNNNN/studyN/viewN_frontal.jpg and "
          "valid/patientNNNNN/... (point `data_root` at the folder with train.csv)")
FOLDER_NAMES = ("CheXpert-v1.0-small", "CheXpert-v1.0")
OBSERVATIONS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                "Fracture", "Support Devices"]
HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS]
FIVE = list(pol.THESIS_POLICIES)
CODES = {"1.0": pol.POSITIVE, "1": pol.POSITIVE, "0.0": pol.NEGATIVE, "0": pol.NEGATIVE,
         "-1.0": pol.UNCERTAIN, "-1": pol.UNCERTAIN, "": pol.BLANK}
PROJECTIONS = ("AP", "PA", "LL", "RL")


@dataclass
class Table:
    """One CheXpert CSV, indexed: the Path column, patients, views, raw label codes (N, 14) and the Sex and Age
    columns as they are written."""

    csv: Path
    paths: list[str]
    patients: np.ndarray
    frontal: np.ndarray
    projections: np.ndarray
    codes: np.ndarray
    sex: np.ndarray | None = None
    age: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class Settings:
    labels: list[str]
    policies: dict[str, str]
    soft_labels: str | None
    view: str
    projections: list[str] | None
    val_fraction: float
    seed: int
    subset: float | None
    subset_seed: int
    subset_by: str
    skip_bad_images: bool
    image_size: int
    age_bins: tuple[float, ...] = (40.0, 60.0)


def build(root=None, **options) -> TxDataset:
    settings = parse_options(options)
    folder = find_folder(root)
    train_table, valid_table = read_table(folder / "train.csv"), read_table(folder / "valid.csv")
    teacher = _teacher(settings)
    sources = {"train": (train_table, _labels(train_table, settings, teacher)),
               "valid": (valid_table, _labels(valid_table, settings, teacher))}
    rows = split_rows(train_table, valid_table, settings)
    skipped = 0
    if settings.skip_bad_images:
        rows, skipped = _drop_unreadable(folder, train_table, valid_table, rows)
    else:
        for table in (train_table, valid_table):
            check_first_image(folder, table)
    splits = {name: make_split(folder, *sources[source], picked, settings.age_bins)
              for name, (source, picked) in rows.items()}
    return TxDataset(NAME, pol.class_names(settings.labels, settings.policies), splits, task="multilabel",
                     description=f"CheXpert radiographs under {folder}",
                     info=_info(folder, settings, train_table, valid_table, skipped))


# ------------------------------------------------------------------------------------------------- options

def parse_options(options: dict) -> Settings:
    o = validate_options(f"dataset {NAME!r}", ChexpertOptions, options, DataError)
    overrides, rest = pol.policy_overrides(o, OBSERVATIONS)
    labels = label_set(rest["labels"])
    return Settings(
        labels=labels,
        policies=pol.resolve_policies(labels, rest["policy"], overrides),
        soft_labels=rest["soft_labels"],
        view=rest["view"],
        projections=_projections(rest["projection"]),
        val_fraction=rest["val_fraction"],
        seed=rest["seed"],
        subset=rest["subset"],
        subset_seed=rest["subset_seed"],
        subset_by=rest["subset_by"],
        skip_bad_images=rest["skip_bad_images"],
        image_size=rest["image_size"],
        age_bins=parse_age_bins(rest["age_bins"]),
    )


def label_set(value) -> list[str]:
    """``5`` (the thesis' observations), ``14`` (all, in CSV order) or a comma-separated list of names."""
    text = str(value).strip()
    if text == "5":
        return list(FIVE)
    if text == "14":
        return list(OBSERVATIONS)
    return as_names(NAME, "labels", text, OBSERVATIONS)


def _projections(value) -> list[str] | None:
    if str(value).strip().lower() == "all":
        return None
    chosen = [p.strip().upper() for p in str(value).split(",")]
    bad = [p for p in chosen if p not in PROJECTIONS]
    if bad:
        raise DataError(f"{NAME}: option projection={value!r}: {bad[0]!r} is not an AP/PA value; use all or a "
                        f"comma-separated list of {', '.join(PROJECTIONS)}")
    return chosen


# ------------------------------------------------------------------------------------------------- reading

def find_folder(root) -> Path:
    """The folder holding train.csv: `data_root` itself or its CheXpert-v1.0-small/ sub-folder."""
    folder = require_dir(root, LAYOUT)
    for candidate in (folder, *(folder / name for name in FOLDER_NAMES)):
        if (candidate / "train.csv").is_file():
            if not (candidate / "valid.csv").is_file():
                raise DataError(f"{candidate / 'valid.csv'}: not found; expected {LAYOUT}")
            return candidate
    raise DataError(f"{folder / 'train.csv'}: not found; expected {LAYOUT}")


def read_table(path: Path) -> Table:
    """Stream the CSV once. Label cells repeat in few combinations (about 24,000 in 223,414 rows), so codes are
    converted once per distinct combination: that halves the indexing time."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            index = _column_index(path, [h.strip() for h in next(reader, [])])
            columns = _stream_columns(path, reader, index)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    paths, views, projections, combination_ids, combinations, sexes, ages = columns
    if not paths:
        raise DataError(f"{path}: no rows; expected the header line and one row per image")
    codes = _codes(path, list(combinations), combination_ids)
    return Table(path, paths, _patients(path, paths), np.asarray(views) == "Frontal", np.asarray(projections), codes,
                 np.asarray(sexes), np.asarray(ages))


def _column_index(path: Path, header: list[str]) -> dict[str, int]:
    missing = [name for name in HEADER if name not in header]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} in the header; expected the official header "
                        f"{','.join(HEADER)}")
    return {"width": len(header), **{name: header.index(name) for name in HEADER}}


def _stream_columns(path: Path, reader, index: dict[str, int]):
    width, at_path, at_view, at_projection = index["width"], index["Path"], index["Frontal/Lateral"], index["AP/PA"]
    at_sex, at_age = index["Sex"], index["Age"]
    observation_columns = [index[name] for name in OBSERVATIONS]
    paths, views, projections, combination_ids, combinations, sexes, ages = [], [], [], [], {}, [], []
    for row in reader:
        if len(row) != width:
            raise DataError(f"{path}: line {reader.line_num} has {len(row)} cells, the header {width}; "
                            f"the file is damaged")
        paths.append(row[at_path])
        views.append(row[at_view])
        projections.append(row[at_projection])
        sexes.append(row[at_sex])
        ages.append(row[at_age])
        cells = tuple(row[k] for k in observation_columns)
        combination_ids.append(combinations.setdefault(cells, len(combinations)))
    return paths, views, projections, combination_ids, combinations, sexes, ages


def _codes(path: Path, combinations: list[tuple], combination_ids: list[int]) -> np.ndarray:
    table = np.empty((len(combinations), len(OBSERVATIONS)), dtype=np.int8)
    for c, cells in enumerate(combinations):
        mapped = list(map(CODES.get, cells))
        if None in mapped:
            k = mapped.index(None)
            line = combination_ids.index(c) + 2
            raise DataError(f"{path}: line {line}, column {OBSERVATIONS[k]!r} is {cells[k]!r}; expected 1.0, 0.0, "
                            f"-1.0 or empty")
        table[c] = mapped
    return table[np.asarray(combination_ids)]


def _patients(path: Path, paths: list[str]) -> np.ndarray:
    """The ``patientNNNNN`` component of each Path (str.find: a regex per row costs a second here)."""
    patients = []
    for value in paths:
        start = value.find("patient")
        end = value.find("/", start)
        if start < 0 or end < 0:
            raise DataError(f"{path}: line {len(patients) + 2}: Path {value!r} has no patientNNNNN folder; "
                            f"expected e.g. CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
        patients.append(value[start:end])
    return np.asarray(patients)


def image_file(folder: Path, path: str) -> str:
    """The image named by a Path cell. The cell starts with the distribution's folder name, whatever the
    user renamed it to, so that component is replaced by the folder holding the CSVs."""
    head, _, tail = path.partition("/")
    return os.path.join(folder, tail if head not in ("train", "valid") else path)


def check_first_image(folder: Path, table: Table) -> None:
    first = image_file(folder, table.paths[0])
    if not os.path.isfile(first):
        raise DataError(f"{first}: not found (first image of {table.csv.name}); the images must sit beside the "
                        f"CSVs: {LAYOUT}")


# ------------------------------------------------------------------------------------------------- labels

def _teacher(settings: Settings) -> dict | None:
    trained = [label for label in settings.labels if settings.policies[label] == "selftrained"]
    if not trained:
        return None
    if not settings.soft_labels:
        raise DataError(f"{NAME}: U-SelfTrained ({', '.join(trained)}) needs a teacher's probabilities: pass "
                        f"`data_options` soft_labels=CSV with columns Path,{','.join(trained)}")
    return pol.read_soft_labels(settings.soft_labels, trained)


def _labels(table: Table, settings: Settings, teacher: dict | None) -> np.ndarray:
    codes = table.codes[:, [OBSERVATIONS.index(label) for label in settings.labels]]
    soft = (pol.soft_matrix(table.paths, codes, settings.labels, settings.policies, teacher, settings.soft_labels)
            if teacher is not None else None)
    return pol.label_matrix(codes, settings.labels, settings.policies, soft)


# ------------------------------------------------------------------------------------------------- splits

def selected_rows(table: Table, settings: Settings) -> np.ndarray:
    keep = np.ones(len(table), dtype=bool)
    if settings.view != "all":
        keep &= table.frontal == (settings.view == "frontal")
    if settings.projections:
        keep &= np.isin(table.projections, settings.projections)
    return np.flatnonzero(keep)


def split_rows(train: Table, valid: Table, settings: Settings) -> dict[str, tuple[str, np.ndarray]]:
    """{split: (source table, row indices)} after filters, the optional val hold-out and the subset."""
    pool, test = selected_rows(train, settings), selected_rows(valid, settings)
    if not len(pool):
        raise DataError(f"{train.csv}: no image left after view={settings.view} "
                        f"projection={','.join(settings.projections or ['all'])}")
    if settings.val_fraction > 0:
        parts = group_split(len(pool), train.patients[pool], np.zeros(len(pool)), settings.seed,
                            val=settings.val_fraction, test=0.0)
        pool, val = pool[parts["train"]], ("train", pool[parts["val"]])
    else:
        val = ("valid", test)
    if settings.subset is not None:
        pool = subset_rows(pool, train.patients, settings.subset, settings.subset_seed, settings.subset_by)
    return {"train": ("train", pool), "val": val, "test": ("valid", test)}


def subset_rows(rows: np.ndarray, patients: np.ndarray, fraction: float, seed: int, by: str) -> np.ndarray:
    """A seeded fraction of ``rows``: round(fraction * N) images.

    ``images`` draws them as pandas' ``DataFrame.sample(frac=fraction, random_state=seed)`` does
    (``RandomState(seed).choice(N, n, replace=False)``), the thesis' way of building Table 4.2's subsets.
    ``patients`` takes whole patients in a seeded order until the count is reached.
    """
    target = int(round(fraction * len(rows)))
    if target == 0:
        raise DataError(f"{NAME}: subset={fraction:g} of {len(rows)} images keeps no image; use a larger fraction")
    rng = np.random.RandomState(seed)
    if by == "images":
        return rows[np.sort(rng.choice(len(rows), size=target, replace=False))]
    unique, inverse = np.unique(patients[rows], return_inverse=True)
    order = rng.permutation(len(unique))
    sizes = np.bincount(inverse, minlength=len(unique))[order]
    taken = order[: int(np.searchsorted(np.cumsum(sizes), target)) + 1]
    return rows[np.isin(inverse, taken)]


def _drop_unreadable(folder: Path, train: Table, valid: Table, rows: dict) -> tuple[dict, int]:
    """Open every image of the chosen rows once; unreadable and missing ones are dropped and counted."""
    tables = {"train": train, "valid": valid}
    verdicts: dict[tuple[str, int], bool] = {}
    kept, bad = {}, set()
    for name, (source, picked) in rows.items():
        ok = []
        for i in picked:
            key = (source, int(i))
            if key not in verdicts:
                verdicts[key] = readable(Path(image_file(folder, tables[source].paths[i])))
            ok.append(verdicts[key])
            if not verdicts[key]:
                bad.add(key)
        kept[name] = (source, picked[np.asarray(ok, dtype=bool)])
    return kept, len(bad)


def make_split(folder: Path, table: Table, labels: np.ndarray, rows: np.ndarray,
               age_bins=(40.0, 60.0)) -> Split:
    """Ids are the CSV's Path cells; the files behind them make the split disk-cached (file_split). Metadata for
    subgroup analysis: sex (the Sex column: Female, Male, Unknown), age (Age binned by ``age_bins``), view
    (Frontal/Lateral) and projection (AP/PA; empty for lateral images, so ``unknown``)."""
    paths = [table.paths[i] for i in rows]
    metadata = {"view": subgroup_values(np.where(table.frontal[rows], "Frontal", "Lateral")),
                "projection": subgroup_values(table.projections[rows])}
    if table.sex is not None:
        metadata = {"sex": subgroup_values(table.sex[rows]), "age": bin_ages(table.age[rows], age_bins), **metadata}
    return file_split([image_file(folder, path) for path in paths], labels[rows], table.patients[rows], ids=paths,
                      metadata=metadata)


def _info(folder: Path, settings: Settings, train: Table, valid: Table, skipped: int) -> dict:
    multiclass = {label: [f"{label}:{s}" for s in pol.STATES]
                  for label in settings.labels if settings.policies[label] == "multiclass"}
    info = {
        "root": str(folder),
        "rows": {"train.csv": len(train), "valid.csv": len(valid)},
        "labels": settings.labels,
        "policies": settings.policies,
        "filters": {"view": settings.view, "projection": settings.projections or "all"},
        "protocol": ("thesis: train = train.csv, val = test = valid.csv" if settings.val_fraction == 0 else
                     f"val = {settings.val_fraction:g} of train.csv's patients (seed {settings.seed}), "
                     f"test = valid.csv"),
        "skipped_images": skipped,
        "image_size": settings.image_size,
    }
    if multiclass:
        info["label_layout"] = multiclass
    if settings.subset is not None:
        info["subset"] = {"fraction": settings.subset, "seed": settings.subset_seed, "by": settings.subset_by}
    return info
