"""CheXpert uncertainty policies (Irvin et al. 2019), settable per observation.

Raw label codes: 1 positive, 0 negative, -1 uncertain, BLANK not mentioned (read as negative). After a policy:

- ``ignore`` (U-Ignore): uncertain -> NaN, which txkit's multi-label loss masks out;
- ``zeros`` / ``ones`` (U-Zeros / U-Ones): uncertain -> 0 / 1;
- ``selftrained`` (U-SelfTrained): uncertain -> a teacher model's probability, read from a CSV (``soft_labels``);
  the teacher is a model trained first with U-Ignore, as in the CheXpert paper;
- ``multiclass`` (U-MultiClass): the observation becomes three one-hot columns ``NAME:negative``,
  ``NAME:positive``, ``NAME:uncertain``. txkit trains every column with a sigmoid (BCE), not a per-observation
  softmax; read ``NAME:positive`` as the finding's score.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from txkit import DataError
from txkit_chest_datasets.options import squash

POSITIVE, NEGATIVE, UNCERTAIN, BLANK = 1, 0, -1, -2
POLICIES = ("ignore", "zeros", "ones", "selftrained", "multiclass")
# Table 4.1 of the thesis (Piano 2020), in its column order; it is also the 5-observation label set.
THESIS_POLICIES = {"Atelectasis": "ones", "Cardiomegaly": "zeros", "Consolidation": "zeros", "Edema": "ones",
                   "Pleural Effusion": "ones"}
OTHER_LABELS_POLICY = "ignore"
STATES = ("negative", "positive", "uncertain")
PATIENT_KEY = re.compile(r"patient\d+/.*$")


def parse_policy(key: str, value) -> str:
    """``ones``, ``U-Ones``, ``u_ones`` and ``UOnes`` all name U-Ones."""
    text = squash(str(value))
    text = text[1:] if text.startswith("u") and text[1:] in POLICIES else text
    if text not in POLICIES:
        raise DataError(f"chexpert: option {key}={value!r} must be one of {', '.join(POLICIES)} "
                        f"(U-Ignore, U-Zeros, U-Ones, U-SelfTrained, U-MultiClass)")
    return text


def policy_overrides(options: dict, observations: list[str]) -> tuple[dict[str, str], dict]:
    """Split ``policy_<LABEL>=...`` options from the rest; returns ({label: policy}, other options)."""
    by_squash = {squash(name): name for name in observations}
    overrides, rest = {}, {}
    for key, value in options.items():
        if not key.startswith("policy_"):
            rest[key] = value
            continue
        label = by_squash.get(squash(key[len("policy_"):]))
        if label is None:
            raise DataError(f"chexpert: option {key}: no observation {key[len('policy_'):]!r}; use "
                            f"policy_<LABEL> with one of {', '.join(observations)}")
        overrides[label] = parse_policy(key, value)
    return overrides, rest


def resolve_policies(labels: list[str], policy, overrides: dict[str, str]) -> dict[str, str]:
    """Table 4.1 unless ``policy`` sets every label; ``policy_<LABEL>`` overrides win."""
    extra = [label for label in overrides if label not in labels]
    if extra:
        raise DataError(f"chexpert: policy_{extra[0]} is set but {extra[0]!r} is not in the label set "
                        f"({', '.join(labels)}); add it with labels=14 or labels=...")
    if policy is None:
        chosen = {label: THESIS_POLICIES.get(label, OTHER_LABELS_POLICY) for label in labels}
    else:
        chosen = dict.fromkeys(labels, parse_policy("policy", policy))
    chosen.update(overrides)
    return chosen


def class_names(labels: list[str], policies: dict[str, str]) -> list[str]:
    names = []
    for label in labels:
        names += [f"{label}:{state}" for state in STATES] if policies[label] == "multiclass" else [label]
    return names


def label_matrix(codes: np.ndarray, labels: list[str], policies: dict[str, str],
                 soft: np.ndarray | None = None) -> np.ndarray:
    """float32 (N, columns) targets from raw codes (N, len(labels)); ``soft`` holds teacher probabilities."""
    columns = []
    for k, label in enumerate(labels):
        code, policy = codes[:, k], policies[label]
        if policy == "multiclass":
            columns += [(code == NEGATIVE) | (code == BLANK), code == POSITIVE, code == UNCERTAIN]
            continue
        column = (code == POSITIVE).astype(np.float32)
        uncertain = code == UNCERTAIN
        if policy == "selftrained":
            column[uncertain] = soft[uncertain, k]
        else:
            column[uncertain] = {"ignore": np.nan, "zeros": 0.0, "ones": 1.0}[policy]
        columns.append(column)
    return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((len(codes), 0), np.float32)


def image_key(path: str) -> str:
    """``patientNNNNN/studyN/viewN_x.jpg``: the same image whether written relative, with prefix, or absolute."""
    match = PATIENT_KEY.search(path.replace("\\", "/"))
    return match.group(0) if match else path


def read_soft_labels(csv_path, labels: list[str]) -> dict[str, np.ndarray]:
    """Teacher probabilities: a CSV with a ``Path`` column and one column per self-trained label."""
    path = Path(str(csv_path)).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: soft-label CSV not found; soft_labels= must be a CSV with columns "
                        f"Path,{','.join(labels)} holding a teacher model's probabilities")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ["Path", *labels] if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r}; expected Path,{','.join(labels)}")
        return {image_key(row["Path"]): _probabilities(path, reader.line_num, row, labels) for row in reader}


def _probabilities(path: Path, line: int, row: dict, labels: list[str]) -> np.ndarray:
    try:
        values = np.array([float(row[label]) for label in labels], dtype=np.float32)
    except ValueError:
        values = np.array([np.nan])
    if not np.all((values >= 0) & (values <= 1)):
        raise DataError(f"{path}: line {line}: probabilities must be numbers in [0, 1]")
    return values


def soft_matrix(paths: list[str], codes: np.ndarray, labels: list[str], policies: dict[str, str],
                teacher: dict[str, np.ndarray], source: str) -> np.ndarray:
    """(N, len(labels)) teacher probabilities for the uncertain cells of self-trained labels (NaN elsewhere).

    ``teacher`` maps image keys to probabilities in the order of the self-trained labels within ``labels``.
    """
    trained = [k for k, label in enumerate(labels) if policies[label] == "selftrained"]
    soft = np.full(codes.shape, np.nan, dtype=np.float32)
    for i in np.flatnonzero((codes[:, trained] == UNCERTAIN).any(axis=1)):
        probs = teacher.get(image_key(paths[i]))
        if probs is None:
            raise DataError(f"{source}: no soft label for {paths[i]}, which is uncertain for a self-trained "
                            f"observation; the teacher CSV must cover every such image")
        soft[i, trained] = probs
    return soft
