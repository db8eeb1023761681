"""Where a network's initial weights come from, parsed once (timm's ``PretrainedCfg`` idea): training,
visualizers and experiments all read a :class:`WeightsSource` instead of interpreting a string."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

STAGE_PREFIX = "stage:"
KINDS = ("imagenet", "none", "file", "run", "stage")


@dataclass(frozen=True)
class WeightsSource:
    kind: Literal["imagenet", "none", "file", "run", "stage"]
    value: str = ""  # the path (file, run) or the stage name (stage)

    @classmethod
    def parse(cls, text: str) -> "WeightsSource":
        """``imagenet``, ``none``, ``stage:NAME`` (experiment files), a run directory or a weights file.

        A path that does not exist yet is a file source; whether it exists is checked where it is read.
        """
        text = str(text).strip()
        if text in ("imagenet", "none"):
            return cls(text)
        if text.startswith(STAGE_PREFIX):
            name = text[len(STAGE_PREFIX):]
            if not name:
                raise ValueError("stage: needs a stage name, e.g. stage:textures")
            return cls("stage", name)
        if not text:
            raise ValueError("is empty; use imagenet, none, a .safetensors/.pth file or a run directory")
        return cls("run" if Path(text).expanduser().is_dir() else "file", text)

    @property
    def path(self) -> Path | None:
        return Path(self.value).expanduser() if self.kind in ("file", "run") else None

    @property
    def pretrained(self) -> bool:
        """True when the backbone factory itself loads ImageNet weights."""
        return self.kind == "imagenet"

    @property
    def loads_state(self) -> bool:
        """True when weights are read from a file or an earlier run after building."""
        return self.kind in ("file", "run")

    def __str__(self) -> str:
        return self.kind if self.kind in ("imagenet", "none") else (
            f"{STAGE_PREFIX}{self.value}" if self.kind == "stage" else self.value)
