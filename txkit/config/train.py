"""TrainConfig: the one description of a training run's settings.

Each field carries its type (``Literal`` for closed choices, bounds for numbers), its default, its help
text and its validation. ``txkit train``'s options (``txkit.cli.config_options``), the experiment-file
checker (``txkit.experiments.spec``) and the Python API (``txkit.train``) are all derived from it, so a
field has one default everywhere. Field-level extras:

- ``flag``: the CLI flag when it is not ``--field-name`` (``data_options`` -> ``--data-option``);
- ``registry``: the registry kind whose names complete on the command line;
- ``path``: the value is a path (relative paths in experiment files are relative to the file).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import txkit.pydantic_guard  # noqa: F401 - before the first model class
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from txkit.config.weights import WeightsSource
from txkit.errors import ConfigError, for_cli


#: The largest `image_size`: a 4096 px input is already 200 MB of float32 per image before any layer.
MAX_IMAGE_SIZE = 4096
#: The most a training batch's input alone (`batch_size` x 3 x S x S float32) may need; the layers need many times
#: more, so anything above fails (or swaps) long after the run started.
MAX_INPUT_BATCH_BYTES = 8 * 2**30


def input_batch_bytes(batch_size: int, image_size: int) -> int:
    """Bytes of one training batch's input as the backbone gets it: 3 channels of float32."""
    return batch_size * 3 * image_size * image_size * 4


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def _memory_problem(batch_size: int | None, image_size: int | None) -> str | None:
    """Why this `batch_size` and `image_size` cannot train (the message follows a field's name), or None."""
    if batch_size is None or image_size is None:
        return None
    need = input_batch_bytes(batch_size, image_size)
    where = (f"a batch of {batch_size} at {image_size} x {image_size} px needs {_size(need)} for its input alone "
             f"(`batch_size` x 3 x S x S x 4 bytes)")
    if image_size > MAX_IMAGE_SIZE:
        return f"must be at most {MAX_IMAGE_SIZE} px: {where}; use e.g. 224 or 512"
    if need > MAX_INPUT_BATCH_BYTES:
        return (f"and `batch_size` are too large together: {where}, over the {_size(MAX_INPUT_BATCH_BYTES)} "
                f"txkit allows; use a smaller `image_size` or `batch_size`")
    return None


def _extra(**extra) -> dict:
    return {"json_schema_extra": extra}


class TrainConfig(BaseModel):
    """The resolved configuration of a run; written to config.json and read back by resume and evaluate."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: str = Field("synthetic-dld", description="Registered dataset (`txkit list datasets`).",
                         **_extra(registry="dataset"))
    data_root: str | None = Field(None, description="Where the dataset lives (folder, CSV or .npz file).",
                                  **_extra(path=True))
    data_options: dict[str, Any] = Field(default_factory=dict, description=(
        "Dataset options (`txkit list dataset NAME` shows them), e.g. seed=3."),
        **_extra(flag="--data-option", metavar="KEY=VALUE"))
    backbone: str = Field("efficientnet_lite0", description="Registered backbone or timm/<model>.",
                          **_extra(registry="backbone"))
    weights: str = Field("imagenet", description=(
        "imagenet, none, a .safetensors/.pth file, or an earlier run directory (its head is dropped)."),
        **_extra(path=True))
    gray: Literal["repeat", "sum"] = Field("repeat", description=(
        "Feed grayscale to a 3-channel backbone by repeating it, or by summing the first conv's kernels."))
    colorizer: str | None = Field(None, description="Gray-to-RGB module in front of the backbone.",
                                  **_extra(registry="colorizer"))
    colorizer_options: dict[str, Any] = Field(default_factory=dict, description=(
        "Colorizer options, e.g. hidden=16."), **_extra(flag="--colorizer-option", metavar="KEY=VALUE"))
    colorizer_from: str | None = Field(None, description="Take the colorizer's weights from an earlier run.",
                                       **_extra(path=True))
    freeze_colorizer: bool = Field(False, description="Keep the colorizer fixed.")
    strategy: str = Field("full", description="Transfer strategy (finetune-from:STAGE for layer-wise fine-tuning).",
                          **_extra(registry="strategy"))
    epochs: int = Field(6, ge=1, description="Training epochs (all phases together).")
    batch_size: int = Field(32, ge=1, description="Images per training batch (evaluation uses twice as many).")
    lr: float | None = Field(None, gt=0, description="Base (max for one-cycle) learning rate; default from the strategy.")
    optimizer: Literal["sgd", "adamw"] | None = Field(None, description="Default from the strategy (sgd).")
    schedule: Literal["onecycle", "exponential", "plateau", "constant"] | None = Field(
        None, description="Learning-rate schedule; default from the strategy.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 weight decay of the weights (not of biases).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    gamma: float = Field(0.95, gt=0, le=1, description="Per-epoch decay of the exponential schedule.")
    monitor: Literal["auc", "accuracy", "f1"] = Field(
        "auc", description="Validation metric for the best checkpoint and early stopping.")
    patience: int | None = Field(None, ge=1, description="Stop after this many epochs without improvement.")
    fraction: float = Field(1.0, gt=0, le=1, description="Keep a class-proportional, seeded fraction of the "
                                                         "training split.")
    image_size: int | None = Field(None, ge=16, description="Resize images to this square size (default: the "
                                                            "dataset's, else 224; at most 4096).")
    augment: bool = Field(True, description="Random horizontal flips during training.")
    skip_bad_images: bool = Field(False, description="Skip unreadable images (counted) instead of failing.")
    class_weights: str = Field("none", description=(
        "Loss weights per class: none, balanced (n / (k * n_c); multi-label pos_weight = negatives / "
        "positives) or a JSON file of weights."), **_extra(metavar="none|balanced|FILE"))
    sampler: Literal["none", "balanced"] = Field("none", description=(
        "balanced: draw training images with replacement so every class is seen equally often (seeded; "
        "resumes exactly)."))
    log: Literal["none", "tensorboard"] = Field("none", description=(
        "Also write TensorBoard event files under RUN/tensorboard (needs txkit[tensorboard])."))
    seed: int = Field(0, ge=0, description="Seeds data order, augmentation, initialisation and splits.")
    folds: int | None = Field(None, description=(
        "k-fold cross-validation: split the dataset's train+val images into K folds by patient, stratified by "
        "class (test is never folded); needs `fold`."), **_extra(metavar="K"))
    fold: int | None = Field(None, description=(
        "The fold (0..K-1) this run holds out and predicts; the other folds are its training data."),
        **_extra(metavar="I"))
    fold_repeat: int = Field(0, description=(
        "Which repetition of the K-fold split (each has its own assignment); with `folds`."), **_extra(metavar="R"))
    fold_seed: int = Field(0, description=(
        "Seeds the fold assignment (not `seed`: every seed of a cell gets the same folds); with `folds`."))
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU.")
    amp: bool = Field(True, description="Mixed precision on CUDA (ignored on CPU).")
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field("auto", description=(
        "DataLoader worker processes (0 loads in the main process); auto: 0 on CPU, where the main process is "
        "fastest, and one per CPU core up to 8 on CUDA."), **_extra(metavar="auto|N"))
    intensity: str = Field("auto", description=(
        "How stored pixel values become the network's input: auto, bitdepth, dicom-voi, window:LEVEL:WIDTH, "
        "percentile:LOW:HIGH, minmax or hu (docs/training.md)."), **_extra(metavar="RULE"))
    image_cache: bool = Field(True, description=(
        "Decode and resize each image once into a memory-mapped cache that later epochs and runs share."))
    cache_dir: str | None = Field(None, description=(
        "Where the image cache lives (default: $TXKIT_CACHE_DIR, else ~/.cache/txkit)."), **_extra(path=True))
    feature_cache: bool = Field(True, description=(
        "Compute a frozen prefix's features once per phase and train the layers above on them."))
    channels_last: bool = Field(True, description="channels_last memory format for conv nets on CUDA.")
    compile: bool = Field(False, description="torch.compile the model (CUDA; docs/training.md says where it helps).")
    sync_batchnorm: bool = Field(False, description="SyncBatchNorm across processes under torchrun (CUDA only).")


    @field_validator("weights")
    @classmethod
    def _parse_weights(cls, value: str) -> str:
        return str(WeightsSource.parse(value))

    @field_validator("image_size")
    @classmethod
    def _check_image_size(cls, value: int | None, info: ValidationInfo) -> int | None:
        why = _memory_problem(info.data.get("batch_size", 1), value)  # batch_size comes first: validated already
        if why:
            raise ValueError(why)  # describe() adds the field and the value
        return value

    @field_validator("batch_size")
    @classmethod
    def _check_batch_size(cls, value: int, info: ValidationInfo) -> int:
        # image_size is validated after batch_size when a config is made; this sees it when batch_size is assigned
        why = _memory_problem(value, info.data.get("image_size"))
        if why:
            raise ValueError(why.replace("and `batch_size` are", "and `image_size` are", 1))
        return value

    @field_validator("intensity")
    @classmethod
    def _parse_intensity(cls, value: str) -> str:
        from txkit.datasets.intensity import IntensityRule, problem

        why = problem(value)
        if why:
            raise ValueError(why)  # describe() adds the field and the value
        return IntensityRule.parse(value).text

    @field_validator("folds")
    @classmethod
    def _check_folds(cls, value: int | None) -> int | None:
        if value is not None and (isinstance(value, bool) or value < 2):
            raise ValueError("must be 2 or more (the number of folds K); use e.g. `folds` 5, or leave it unset "
                             "for the dataset's own train/val split")
        return value

    @field_validator("fold", "fold_repeat", "fold_seed")
    @classmethod
    def _check_fold_index(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value < 0:
            raise ValueError(f"must be 0 or more; use e.g. `{info.field_name}` 0")
        return value

    def model_post_init(self, context: Any) -> None:
        # Across fields, when a config is made: not a model validator, which pydantic would also run when
        # check_field validates one field of an experiment file on a probe whose other fields are defaults.
        why = self._fold_problem()
        if why:
            raise ConfigError(why)

    def _fold_problem(self) -> str | None:
        """Why the fold fields do not fit together (each message names the field to change), or None."""
        k, fold = self.folds, self.fold
        if k is None:
            given = [name for name, unset in (("fold", fold is None), ("fold_repeat", self.fold_repeat == 0),
                                              ("fold_seed", self.fold_seed == 0)) if not unset]
            if given:
                return (f"`{given[0]}` {getattr(self, given[0])} needs `folds` (the number of folds K); pass `folds` "
                        f"K too, e.g. `folds` 5, or drop `{given[0]}`")
        elif fold is None:
            return (f"`folds` {k} needs `fold`: the fold (0..{k - 1}) this run holds out; pass `fold` 0 to {k - 1} "
                    f"(an experiment file's [grid] folds = {k} runs them all)")
        elif fold >= k:
            return f"`fold` {fold} is outside 0..{k - 1} for `folds` {k}; pass a `fold` from 0 to {k - 1}"
        return None

    @property
    def weights_source(self) -> WeightsSource:
        return WeightsSource.parse(self.weights)

    # --- construction ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, **fields) -> "TrainConfig":
        """Validated construction; a bad value is one line naming the field (ConfigError)."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """From config.json: fields this version no longer knows are ignored."""
        return cls.create(**{k: v for k, v in data.items() if k in cls.model_fields})

    def to_dict(self) -> dict:
        return self.model_dump()

    def replace(self, **changes) -> "TrainConfig":
        return self.create(**{**self.to_dict(), **changes})

    @classmethod
    def check_field(cls, name: str, value, strict: bool = False) -> Any:
        """Validate one field's value as the model would; ``strict`` (experiment files, whose TOML values
        are typed) refuses "3" for an integer instead of converting it."""
        if name not in cls.model_fields:
            raise ConfigError(f"unknown field `{name}`")
        try:
            probe = cls.model_construct()
            cls.__pydantic_validator__.validate_assignment(probe, name, value, strict=strict)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None
        return getattr(probe, name)

    @classmethod
    def defaults(cls) -> dict:
        return cls().to_dict()


def describe(exc: ValidationError) -> str:
    """pydantic's first error as one line: `field`: what is wrong (got VALUE)."""
    first = exc.errors()[0]
    # Union members show up in the location (``num_workers.constrained-int``); the field is what the user wrote.
    loc = [p for p in first["loc"] if not (isinstance(p, str) and (p.startswith(("constrained-", "literal["))
                                                                   or p in ("int", "str", "float", "bool")))]
    field = ".".join(str(p) for p in loc) or "config"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        import difflib

        close = difflib.get_close_matches(field, list(TrainConfig.model_fields), n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return f"unknown field `{field}`{hint}"
    message = message.removeprefix("Value error, ").replace("Input should be", "must be")
    return f"`{field}` {message} (got {first.get('input')!r})"


def field_flag(name: str) -> str:
    """The CLI flag of a field (what the CLI shows where the library says `name`)."""
    return for_cli(f"`{name}`")
