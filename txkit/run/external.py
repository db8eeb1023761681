"""External validation: a finished run scored on another dataset (another hospital's images), through the
intensity rule and image size the run recorded at training time, in the run's classes.

Classes are matched by name. ``class_map`` (``A=B,C=D``: the external dataset's class A is the run's class B)
renames the external classes; several may map to one run class (multiclass). An external class that matches no
run class is refused (a run cannot be scored on a class it never learnt); a run class that the evaluated images
do not have is reported as absent, and the macro values average over the classes present.

Which images: the external dataset's test split when it has test images, else all of its images (every split,
in order); ``split`` picks one of its splits, or ``all``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from txkit.datasets.base import Split, TxDataset, concat_splits, read_intensity
from txkit.errors import DataError, TxkitError

ALL = "all"


@dataclass
class Target:
    """What an evaluation scores: split ``split`` of ``dataset``, whose labels are in the run's classes."""

    dataset: TxDataset
    split: str
    external: bool = False
    source: dict = field(default_factory=dict)  # the external dataset, as evaluate reports it
    absent: list[str] = field(default_factory=list)  # run classes without any image in the split
    splits: dict | None = None  # the run's own splits by name (a fold run's train/val/oof); None: the dataset's

    @property
    def part(self) -> Split:
        return (self.splits if self.splits is not None else self.dataset.splits)[self.split]

    @property
    def tag(self) -> str:
        """What names the split in file names (roc_TAG.png): the split, or external-NAME-SPLIT."""
        return f"external-{self.dataset.name}-{self.split}" if self.external else self.split


def parse_class_map(value) -> dict[str, str]:
    """``"A=B,C=D"`` (or a dict) as {external class: run class}; one line naming `class_map` otherwise."""
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            left, sep, right = item.partition("=")
            if not sep:
                raise TxkitError(f"`class_map` {value!r}: {item!r} is not A=B; give EXTERNAL=RUN pairs, e.g. "
                                 f"`class_map` healthy=normal,sick=pneumonia")
            pairs.append((left, right))
    else:
        raise TxkitError(f"`class_map` must be EXTERNAL=RUN pairs such as 'healthy=normal,sick=pneumonia' or a "
                         f"dict, got {type(value).__name__} {value!r}")
    out: dict[str, str] = {}
    for left, right in pairs:
        if not isinstance(left, str) or not isinstance(right, str) or not left.strip() or not right.strip():
            raise TxkitError(f"`class_map`: {left!r}={right!r} needs a class name on both sides, e.g. "
                             f"healthy=normal")
        if left.strip() in out:
            raise TxkitError(f"`class_map` names {left.strip()!r} twice; map each external class once")
        out[left.strip()] = right.strip()
    return out


def external_target(run_classes: list[str], run_task: str, name: str, data_root=None, data_options=None,
                    class_map=None, split: str | None = None) -> Target:
    """The external dataset ``name`` built with ``data_root`` and ``data_options``, its labels put in the run's
    classes, the split to score chosen and its images checked; every problem is one line, before any network
    runs."""
    mapping = parse_class_map(class_map)
    options = dict(data_options or {})
    built = _build(name, data_root, options)
    if built.task != run_task:
        raise TxkitError(f"`dataset` {name}: its labels are {built.task}, the run's {run_task}; a run can only be "
                         f"scored on a {run_task} dataset")
    columns = column_map(built.classes, run_classes, mapping, name)
    chosen, part, note = _choose_split(built, split)
    part = relabel(part, columns, len(run_classes), run_task)
    check_images(part, name, data_root)
    dataset = TxDataset(built.name, list(run_classes), {chosen: part}, task=run_task,
                        description=built.description, info=built.info)
    absent = absent_classes(part, run_classes, run_task)
    source = {"name": built.name, "data_root": None if data_root is None else str(data_root),
              "data_options": {k: v for k, v in options.items()}, "split": chosen, "n": len(part),
              "class_map": mapping, "classes": list(built.classes), "absent_classes": absent, "note": note}
    return Target(dataset, chosen, external=True, source=source, absent=absent)


def probe_external(name: str, data_root=None, data_options=None, class_map=None, split: str | None = None) -> list:
    """What can be checked without a run (an experiment's [external] tables, before anything trains): the dataset
    builds, ``class_map`` names its classes, the split exists and its images are there. Returns its classes."""
    mapping = parse_class_map(class_map)
    built = _build(name, data_root, dict(data_options or {}))
    _check_map_sources(mapping, built.classes, name)
    _, part, _ = _choose_split(built, split)
    check_images(part, name, data_root)
    return list(built.classes)


def _build(name: str, data_root, options: dict) -> TxDataset:
    from txkit.plugins import create

    built = create("dataset", name, root=None if data_root is None else str(data_root), **options)
    built.check_labels()
    built.check_splits()
    return built


def _check_map_sources(mapping: dict[str, str], external: list[str], name: str) -> None:
    unknown = [a for a in mapping if a not in external]
    if unknown:
        raise TxkitError(f"`class_map` names {unknown[0]!r}, which is not a class of the external dataset {name} "
                         f"(its classes: {', '.join(external)}); fix the map")


def column_map(external: list[str], run_classes: list[str], mapping: dict[str, str], name: str) -> list[int]:
    """The run's class index of each external class; one line for a map naming unknown classes or an external
    class that matches none of the run's."""
    _check_map_sources(mapping, external, name)
    foreign = [b for b in mapping.values() if b not in run_classes]
    if foreign:
        raise TxkitError(f"`class_map` maps to {foreign[0]!r}, which is not a class of the run (its classes: "
                         f"{', '.join(run_classes)}); fix the map")
    target = {c: mapping.get(c, c) for c in external}
    unmatched = [c for c in external if target[c] not in run_classes]
    if unmatched:
        example = ",".join(f"{c}={run_classes[min(i, len(run_classes) - 1)]}" for i, c in enumerate(unmatched))
        raise TxkitError(f"`dataset` {name}: class{'es' if len(unmatched) > 1 else ''} {', '.join(unmatched)} "
                         f"match{'' if len(unmatched) > 1 else 'es'} no class of the run ({', '.join(run_classes)}); "
                         f"map each to a run class with `class_map` (e.g. {example}), or leave those images out: "
                         f"a run cannot be scored on a class it never learnt")
    return [run_classes.index(target[c]) for c in external]


def _choose_split(dataset: TxDataset, split: str | None) -> tuple[str, Split, str]:
    non_empty = [s for s, part in dataset.splits.items() if len(part)]
    if split is None:
        if len(dataset.splits.get("test", ())):
            return "test", dataset.splits["test"], f"the test split of {dataset.name}"
        split = ALL
        note = f"all {sum(len(dataset.splits[s]) for s in non_empty)} images of {dataset.name} (it has no test split)"
    else:
        note = ""
    if split == ALL:
        part = concat_splits([dataset.splits[s] for s in non_empty])
        return ALL, part, note or f"all {len(part)} images of {dataset.name} ({' + '.join(non_empty)})"
    if split not in dataset.splits or not len(dataset.splits[split]):
        raise TxkitError(f"`split` {split}: the external dataset {dataset.name} has no {split} images; use "
                         f"{', '.join(non_empty + [ALL])}")
    return split, dataset.splits[split], f"the {split} split of {dataset.name}"


def relabel(part: Split, columns: list[int], n_classes: int, task: str) -> Split:
    """The split's labels in the run's class order (multilabel: the run's labels the external data lack are
    unknown, NaN)."""
    if task == "multiclass":
        return part.with_labels(np.asarray(columns, dtype=np.int64)[part.labels.astype(np.int64)])
    if len(set(columns)) < len(columns):
        raise TxkitError("`class_map` maps two labels of a multi-label dataset to one run label; map each to its "
                         "own label")
    labels = np.full((len(part), n_classes), np.nan, dtype=np.float32)
    labels[:, columns] = part.labels
    return part.with_labels(labels)


def absent_classes(part: Split, classes: list[str], task: str) -> list[str]:
    """The run's classes without an image in the split (multilabel: without a known value)."""
    return absent_from_labels(part.labels, classes, task)


def absent_from_labels(labels, classes: list[str], task: str) -> list[str]:
    labels = np.asarray(labels)
    if task == "multiclass":
        present = set(np.unique(labels.astype(np.int64)).tolist())
        return [c for k, c in enumerate(classes) if k not in present]
    known = ~np.isnan(labels.astype(np.float64))
    return [c for k, c in enumerate(classes) if not known[:, k].any()]


def check_images(part: Split, name: str, root) -> None:
    """Every listed file exists and the first image decodes, before any network runs; one line naming the
    option and the fix otherwise."""
    where = f"`dataset` {name}" + (f" (`data_root` {root})" if root is not None else "")
    fix = ("fix `data_root` or the dataset's image paths (for csv: its path column or `data_options` image_root), "
           "or pass `data_options` skip_bad_images=true to leave unreadable images out")
    if part.sources is not None:
        missing = [s for s in part.sources if not os.path.isfile(s)]
        if missing:
            raise TxkitError(f"{where}: {len(missing)} of {len(part)} images not found, the first {missing[0]}; {fix}")
    try:
        if part.sources is not None:
            read_intensity(part.sources[0])
        else:
            part.values(0)
    except DataError as exc:
        # the dataset's own advice names training's options (--skip-bad-images), which evaluate has not
        reason = str(exc).split("; ")[0]
        raise TxkitError(f"{where}: an image fails to read ({reason}); {fix}") from None


def evaluation_advice(exc: DataError) -> TxkitError:
    """A dataset's error met while predicting the external images, with evaluate's options as the fix."""
    text = str(exc).replace("pass `skip_bad_images`", "pass `data_options` skip_bad_images=true")
    return TxkitError(text)


def external_predictions(run_dir, key: str, name: str, data_root=None, data_options=None, class_map=None,
                         split: str | None = None, *, device: str = "auto") -> dict:
    """The run's predictions on an external dataset, stored as RUN/predictions_external-KEY.npz with the images'
    metadata and read back while ``key`` (a digest of the dataset's entry) is the same: {"y_true", "logits",
    "ids", "groups", "metadata", "classes", "task", "split", "absent"}. Delete the file to predict again after
    the external images changed."""
    from txkit.rundir import RunDir, load_predictions, save_predictions
    from txkit.run.predict import predict_split

    tag = f"external-{key}"
    stored = load_predictions(run_dir, tag)
    if stored is None:
        resolved = RunDir(run_dir).resolved()
        target = external_target(list(resolved["classes"]), resolved["task"], name, data_root, data_options,
                                 class_map, split)
        try:
            predicted = predict_split(run_dir, target.split, dataset=target.dataset, device=device)
        except DataError as exc:
            raise evaluation_advice(exc) from None
        save_predictions(run_dir, tag, predicted["y_true"], predicted["logits"], predicted["ids"],
                         groups=predicted["groups"], metadata=target.part.metadata)
        stored = load_predictions(run_dir, tag)
    return {**stored, "absent": absent_from_labels(stored["y_true"], stored["classes"], stored["task"])}
