"""Options of the frequency-response visualizer (``--visualizer-option KEY=VALUE``); imports no torch."""

from pydantic import Field

from txkit import Options

DEFAULT_THETAS = 8


class FrequencyOptions(Options):
    thetas: int = Field(DEFAULT_THETAS, ge=1, le=360,
                        description="Grating orientations averaged per frequency (Suzuki 2018 Eq. 8).")
    size: int | None = Field(None, ge=16, description="Grating size in pixels (default: the run's image size, else 64).")
