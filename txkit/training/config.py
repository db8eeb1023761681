"""The resolved configuration of a run; written to config.json and read back by resume and evaluate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class TrainConfig:
    dataset: str = "synthetic-dld"
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    gray: str = "repeat"
    colorizer: str | None = None
    colorizer_options: dict = field(default_factory=dict)
    colorizer_from: str | None = None
    freeze_colorizer: bool = False
    strategy: str = "full"
    epochs: int = 6
    batch_size: int = 32
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.9
    gamma: float = 0.95
    monitor: str = "auc"
    patience: int | None = None
    fraction: float = 1.0
    image_size: int | None = None
    augment: bool = True
    skip_bad_images: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    num_workers: int = 0
    class_weights: str = "none"
    sampler: str = "none"
    log: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
