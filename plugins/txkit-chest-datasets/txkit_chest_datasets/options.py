"""The options of the chest datasets (declared for txkit, which validates them before a factory runs) and the
helpers that check what a field's type cannot: label names and policies."""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import field_validator, model_validator

from txkit import AGE_BINS, DataError, Field, Options, check_fractions

SKIP_HELP = "open every image once and skip (count) unreadable ones; txkit train --skip-bad-images sets it"
AGE_HELP = ("edges of the age bins of the per-image metadata (txkit evaluate --by age), comma-separated: 40,60 "
            "gives <40, 40-59 and >=60")


def _lower(value):
    return value.strip().lower() if isinstance(value, str) else value


class ChexpertOptions(Options):
    """Options of ``chexpert`` (``--data-option KEY=VALUE``)."""

    labels: str = Field("5", description="5 (the thesis' observations), 14 (all, in CSV order) or a "
                        "comma-separated list of observations")
    policy: Optional[str] = Field(None, description="uncertainty policy of every label: ignore, zeros, ones, "
                                  "selftrained or multiclass (default: the thesis' Table 4.1, ignore for others)")
    soft_labels: Optional[str] = Field(None, description="CSV of a teacher's probabilities (columns Path and the "
                                       "labels) for the selftrained policy")
    view: Literal["all", "frontal", "lateral"] = Field("all", description="keep only frontal or lateral images")
    projection: str = Field("all", description="all, or AP/PA/LL/RL values to keep, comma-separated")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="0: val = test = valid.csv (the thesis); F > 0: "
                                "a seeded patient-disjoint fraction of train.csv's patients becomes val")
    seed: int = Field(0, description="seed of the val split")
    subset: Optional[float] = Field(None, gt=0.0, le=1.0, description="keep this fraction of train.csv (e.g. 0.1 "
                                    "for the thesis' 10 %)")
    subset_seed: int = Field(0, description="seed of the subset")
    subset_by: Literal["images", "patients"] = Field("images", description="draw the subset by images or by "
                                                     "patients")
    skip_bad_images: bool = Field(False, description=SKIP_HELP)
    image_size: int = Field(320, ge=1, description="input size in pixels for training")
    age_bins: str = Field(AGE_BINS, description=AGE_HELP)

    patterns = {"policy_<LABEL>": "uncertainty policy of one label, e.g. policy_edema=zeros (overrides policy)"}

    _choices = field_validator("view", "subset_by", mode="before")(_lower)


class ChestXray14Options(Options):
    """Options of ``chestxray14`` (``--data-option KEY=VALUE``)."""

    labels: str = Field("14", description="14 (all findings), 5 (the thesis' five) or a comma-separated list of "
                        "findings")
    view: Literal["all", "pa", "ap"] = Field("all", description="keep only PA or AP images (View Position)")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="fraction of train_val_list.txt's patients "
                                "that becomes val (seeded); test is test_list.txt")
    seed: int = Field(0, description="seed of the val split")
    skip_bad_images: bool = Field(False, description=SKIP_HELP)
    image_size: int = Field(320, ge=1, description="input size in pixels for training")
    age_bins: str = Field(AGE_BINS, description=AGE_HELP)

    _choices = field_validator("view", mode="before")(_lower)


class TbOptions(Options):
    """Options of ``montgomery`` and ``shenzhen`` (``--data-option KEY=VALUE``)."""

    seed: int = Field(0, description="seed of the patient-disjoint, class-proportional split")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="fraction of the patients that becomes val")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of the patients that becomes test")
    skip_bad_images: bool = Field(False, description=SKIP_HELP)
    image_size: Optional[int] = Field(None, ge=1, description="suggested input size in pixels for training")

    _fractions = model_validator(mode="after")(check_fractions)


def squash(name: str) -> str:
    """Compare names ignoring case, spaces, underscores and dashes (``pleural_effusion`` = ``Pleural Effusion``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def as_names(dataset: str, key: str, value: str, known: list[str]) -> list[str]:
    """A comma-separated list of names from ``known``, in the order given."""
    by_squash = {squash(name): name for name in known}
    names = []
    for part in (p.strip() for p in str(value).split(",")):
        if squash(part) not in by_squash:
            raise DataError(f"{dataset}: option {key}: unknown name {part!r}; choose from {', '.join(known)}")
        names.append(by_squash[squash(part)])
    return names
