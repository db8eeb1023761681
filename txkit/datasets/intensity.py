"""Intensity rules: how an image's stored values become the network's input (docs/training.md, "Intensity rules").

Contract used by the loader and the image cache (``txkit.data.loader``, ``txkit.data.cache``):

- ``IntensityRule.parse(text)`` checks a rule (``ConfigError`` naming `intensity`);
- ``rule.fit(split)`` returns the rule with its dataset-wide statistics resolved (percentile bounds) and the kinds
  of source it saw (what ``auto`` becomes), from a seeded sample of the (training) split;
- ``rule.key`` is a string that changes whenever the pixels the rule gives change (the image cache's key);
- ``rule.dtype``: ``np.uint8`` or ``np.float32``, what :func:`load_input` returns (None for an unfitted rule that
  decides per image: ``auto``, ``bitdepth`` and ``dicom-voi`` before ``fit``);
- ``load_input(split, index, size, rule)`` is one image, decoded, put through the rule and resized:
  a ``uint8`` (size, size) array when the rule keeps 8-bit grey (scaled by 1/255 later, :func:`as_float`),
  else ``float32``.

Values ``v`` are in the image's own units (``Split.values``): HU for CT, the stored values otherwise.

- ``auto``: per kind of source: 8-bit images keep the 8-bit path (uint8 grey resized as uint8, then / 255: the
  rule txkit always had, so runs on 8-bit data reproduce), 16-/32-bit and float PNG/TIFF use ``bitdepth``, DICOM
  ``dicom-voi``;
- ``bitdepth``: v / the stored bit depth's maximum (8-bit: the 8-bit path; 16-bit: 65535; 32-bit: 2**31 - 1;
  float images as stored; DICOM: the stored range after the modality LUT, mapped to [0, 1]);
- ``dicom-voi``: DICOM by :func:`txkit.datasets.dicom.display_range` (the header window, else -1024..3071 HU for
  CT, else the stored range), clipped to [0, 1]; other images by their ``auto`` rule;
- ``window:LEVEL:WIDTH``: clip((v - (LEVEL - WIDTH / 2)) / WIDTH, 0, 1), in HU for CT;
- ``percentile:LOW:HIGH``: clip((v - p_LOW) / (p_HIGH - p_LOW), 0, 1), the percentiles over the training split;
- ``minmax``: (v - min) / (max - min) per image; a uniform image (max == min) becomes 0.5 everywhere;
- ``hu``: v unscaled (CT in HU only), for a colorizer that expects HU (``window``); see
  :func:`txkit.colorizers.inputs.check_config`.

Resizing is bicubic (PIL) after the rule; the result is clipped to the range the rule gave before resizing, so
bicubic overshoot adds no values the rule did not give.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from txkit.datasets.base import Split, probe_intensity, read_intensity
from txkit.datasets.pixels import as_float, resize_gray
from txkit.errors import ConfigError, DataError, TxkitError, warn as warn_user

NAMES = ("auto", "bitdepth", "dicom-voi", "minmax", "hu")
PARAMETERS = {"window": ("LEVEL", "WIDTH"), "percentile": ("LOW", "HIGH")}
#: What ``auto`` becomes per kind of source ("8-bit": the 8-bit path).
AUTO = {"8-bit": "8-bit", "16-bit": "bitdepth", "32-bit": "bitdepth", "float": "bitdepth", "dicom": "dicom-voi"}
EIGHT_BIT = "8-bit"
#: ``fit`` looks at every image of a split up to this many, else at this many drawn with FIT_SEED.
FIT_SAMPLE = 256
FIT_SEED = 0
#: ``percentile`` pools up to this many pixels per sampled image (a seeded draw with replacement).
PIXELS_PER_IMAGE = 65536
KEY_VERSION = "intensity-v1"
TOPS = {"16-bit": 65535.0, "32-bit": float(2**31 - 1), "float": 1.0}
#: Rules whose numbers are in the training images' units (a window, percentile bounds, HU): an input in other
#: units cannot be made meaningful by them.
UNIT_BOUND = ("window", "percentile", "hu")
USAGE = ("auto, bitdepth, dicom-voi, window:LEVEL:WIDTH (e.g. window:40:400), percentile:LOW:HIGH "
         "(e.g. percentile:1:99), minmax or hu")


def problem(text) -> str | None:
    """Why ``text`` is not a rule (without the field name and the value), or None."""
    if not isinstance(text, str) or not text.strip():
        return f"must be a rule: {USAGE}"
    name, *args = text.strip().split(":")
    name = name.strip().lower()
    if name in NAMES:
        return f"{name} takes no parameters; use {USAGE}" if args else None
    if name not in PARAMETERS:
        return f"is not a known rule; use {USAGE}"
    labels = PARAMETERS[name]
    try:
        numbers = [float(a) for a in args]
    except ValueError:
        numbers = []
    if len(numbers) != 2 or not all(np.isfinite(numbers)):
        return f"{name} needs two numbers, {name}:{':'.join(labels)} (e.g. {name}:{'40:400' if name == 'window' else '1:99'})"
    if name == "window" and not numbers[1] > 0:
        return "window:LEVEL:WIDTH needs a positive WIDTH"
    if name == "percentile" and not 0 <= numbers[0] < numbers[1] <= 100:
        return "percentile:LOW:HIGH needs 0 <= LOW < HIGH <= 100"
    return None


def _canonical(text: str) -> str:
    name, *args = text.strip().split(":")
    return ":".join([name.strip().lower(), *(f"{float(a):g}" for a in args)])


def source_kind(info: dict) -> str:
    """"dicom" for DICOM (and any values in HU), else the stored unit ("8-bit", "16-bit", "32-bit", "float")."""
    if info.get("format") == "dicom" or info.get("unit") == "HU":
        return "dicom"
    return info.get("unit") or EIGHT_BIT


class Unseen(NamedTuple):
    """An input of a kind the rule's fit sample never held (:meth:`IntensityRule.unseen`): ``message`` is one line
    (without the image's name) saying what it is, what training saw, what the rule does to it and what to do;
    ``refuse`` when the rule cannot give it a meaningful input."""

    refuse: bool
    message: str


@dataclass(frozen=True)
class IntensityRule:
    """A parsed (and after :meth:`fit`, resolved) intensity rule; ``text`` is its canonical spelling."""

    text: str = "auto"
    bounds: tuple[float, float] | None = None  # percentile values after fit
    kinds: tuple[tuple[str, int], ...] | None = None  # kinds of source in the fit sample; None: not fitted
    units: tuple[tuple[str, int], ...] = ()
    modalities: tuple[tuple[str, int], ...] = ()
    sampled: int = 0
    total: int = 0
    windowed: int = 0  # sampled DICOM images with a header window
    warnings: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "IntensityRule":

        why = problem(text)
        if why:
            raise ConfigError(f"`intensity` {why} (got {text!r})")
        return cls(_canonical(text))

    @property
    def name(self) -> str:
        return self.text.split(":")[0]

    @property
    def parameters(self) -> tuple[float, ...]:
        return tuple(float(a) for a in self.text.split(":")[1:])

    def effective(self, kind: str) -> str:
        """The rule an image of ``kind`` goes through ("8-bit" is the 8-bit path)."""
        if self.name == "auto":
            return AUTO.get(kind, "bitdepth")
        if self.name == "bitdepth":
            return EIGHT_BIT if kind == EIGHT_BIT else "bitdepth"
        if self.name == "dicom-voi":
            return "dicom-voi" if kind == "dicom" else AUTO.get(kind, "bitdepth")
        return self.name

    @property
    def dtype(self):
        if self.name in ("window", "percentile", "minmax", "hu"):
            return np.float32
        if self.kinds is None:
            return None
        return np.uint8 if all(self.effective(kind) == EIGHT_BIT for kind, _ in self.kinds) else np.float32

    @property
    def key(self) -> str:
        dtype = np.dtype(self.dtype).name if self.dtype is not None else "per-image"
        bounds = f"|{self.bounds[0]!r}:{self.bounds[1]!r}" if self.bounds is not None else ""
        return f"{KEY_VERSION}|{self.text}|{dtype}{bounds}"

    # --- fitting ----------------------------------------------------------------------------------------
    def fit(self, split: Split) -> "IntensityRule":
        """The rule resolved on ``split`` (the training split): the kinds of source, units and modalities of a
        sample (every image up to FIT_SAMPLE, else FIT_SAMPLE drawn with FIT_SEED; headers only where they
        suffice), percentile bounds from the pixels of that sample, and warnings for mixes. Deterministic, so a
        resumed run fits the same rule on the same files."""
        picks = sample_indices(len(split))
        kinds, units, modalities, pool, windowed = Counter(), Counter(), Counter(), [], 0
        rng = np.random.default_rng(FIT_SEED)
        for i in picks:
            if self.name == "percentile":
                values, info = split.values(i)
                pool.append(_pixels(values, rng))
            else:
                info = _probe(split, i)
            kinds[source_kind(info)] += 1
            units[info["unit"]] += 1
            if info.get("modality"):
                modalities[info["modality"]] += 1
            windowed += info.get("window_width") is not None
            if self.name == "hu" and info["unit"] != "HU":
                raise DataError(f"{_name(split, i)}: `intensity` hu needs CT in Hounsfield units, but this image is "
                                f"{_described(info)}; use `intensity` auto, dicom-voi or window:LEVEL:WIDTH")
        fitted = replace(self, kinds=_pairs(kinds), units=_pairs(units), modalities=_pairs(modalities),
                         sampled=len(picks), total=len(split), windowed=windowed)
        if self.name == "percentile":
            fitted = replace(fitted, bounds=self._bounds(pool, len(picks)))
        return replace(fitted, warnings=tuple(fitted._warnings()))

    def _bounds(self, pool: list[np.ndarray], sampled: int) -> tuple[float, float]:
        low, high = self.parameters
        if not pool:
            raise DataError(f"`intensity` {self.text}: the training split has no images to compute percentiles on")
        p_low, p_high = (float(v) for v in np.percentile(np.concatenate(pool), [low, high]))
        if not p_high > p_low:
            raise DataError(f"`intensity` {self.text}: the {low:g}th and {high:g}th percentiles over {sampled} sampled "
                            f"training images are both {p_low:g}; choose a wider range, e.g. percentile:0:100")
        return p_low, p_high

    def _warnings(self) -> list[str]:
        from txkit.datasets.info import mix_warnings

        where = f"in {self.sampled} sampled training images"
        out = mix_warnings(Counter(dict(self.modalities)), Counter(dict(self.units)), where)
        if self.name == "window":
            other = {u: n for u, n in self.units if u != "HU"}
            if other:
                counts = ", ".join(f"{u} {n}" for u, n in other.items())
                out.append(f"`intensity` {self.text} is meant for CT in HU, but {sum(other.values())} of {self.sampled} "
                           f"sampled training images are not ({counts}): the window applies to their stored values")
        return out

    # --- inputs of a kind training never saw ------------------------------------------------------------
    def unseen(self, info: dict) -> Unseen | None:
        """Whether an input with ``info`` (:func:`txkit.datasets.base.read_intensity`'s) is of a kind the fit sample
        never held (kind of source, unit, DICOM modality), and what follows (docs/training.md, "Inputs of a kind
        training never saw"): refused under a rule whose numbers are in the training units (``window``,
        ``percentile``, ``hu``) when the input's unit differs, else a warning. None when training saw it, and for
        runs that recorded no sources (older runs: nothing to compare with)."""
        if self.kinds is None:
            return None
        kind, unit, modality = source_kind(info), info.get("unit"), info.get("modality")
        units, modalities = dict(self.units), dict(self.modalities)
        new_unit = bool(units) and unit not in units
        if kind in dict(self.kinds) and not new_unit and not (modality and modality not in modalities):
            return None
        head = f"{_described(info)}, a kind of input the run never saw in training ({self._seen()})"
        if self.name == "hu":  # units holds only HU (fit refuses the rest): every new kind is not HU
            return Unseen(True, f"{head}; `intensity` hu needs CT in Hounsfield units: give CT DICOM in HU, or use "
                                f"a run trained on images like this one")
        if self.name in UNIT_BOUND and new_unit:
            trained = " / ".join(units)
            fix = ("give CT DICOM in HU as the training images were" if trained == "HU" else
                   f"convert it to {trained} as the training images were")
            return Unseen(True, f"{head}; `intensity` {self.text} {self._gives(self.name, info)}, numbers in "
                                f"{trained} that mean nothing for {unit} values: {fix}, or use a run trained on "
                                f"images like this one")
        how = self.effective(kind)
        trained = {k: _gets(self.effective(k), k) for k, _ in self.kinds}
        contrast = ("" if self.name not in ("auto", "bitdepth", "dicom-voi") else
                    f" (the training images: {'; '.join(f'{k} {g}' for k, g in trained.items())})")
        return Unseen(False, f"{head}; `intensity` {self.text} {self._gives(how, info)}{contrast}, so the network "
                             f"gets an input unlike any it trained on: check its result, or give images of the kind "
                             f"training saw")

    def _seen(self) -> str:
        parts = [", ".join(f"{kind} {n}" for kind, n in self.kinds)]
        if self.modalities:
            parts.append("modalities " + ", ".join(f"{m} {n}" for m, n in self.modalities))
        if self.units and {u for u, _ in self.units} != {k for k, _ in self.kinds}:
            parts.append("units " + ", ".join(f"{u} {n}" for u, n in self.units))
        return f"its {self.sampled} sampled training images: {'; '.join(parts)}"

    def _gives(self, how: str, info: dict) -> str:
        """What rule ``how`` does to an input with ``info``, as a phrase after "`intensity` RULE"."""
        if how == EIGHT_BIT:
            return "divides its 8-bit grey by 255"
        if how == "bitdepth" and info.get("format") == "dicom":
            low, high = info.get("range") or (0.0, 0.0)
            return f"maps its stored range {low:g}..{high:g} to 0..1"
        if how == "bitdepth":
            return ("takes its float values as stored" if info.get("unit") == "float" else
                    f"divides it by {TOPS.get(info.get('unit'), 255.0):g}")
        if how == "dicom-voi":
            from txkit.datasets.dicom import display_range

            low, high = display_range(info)
            return f"maps its display range {low:g}..{high:g} to 0..1"
        if how == "window":
            level, width = self.parameters
            return f"maps {level - width / 2:g}..{level + width / 2:g} to 0..1"
        if how == "percentile":
            low, high = self.bounds if self.bounds is not None else (float("nan"),) * 2
            return f"maps the training percentiles {low:g}..{high:g} to 0..1"
        if how == "minmax":
            return "stretches its own min..max to 0..1"
        return "passes its values unscaled"

    # --- config.json ------------------------------------------------------------------------------------
    def record(self) -> dict:
        """What the run's config.json keeps under ``resolved.intensity`` (read back by :meth:`from_record`)."""
        out = {"rule": self.text, "key": self.key,
               "dtype": np.dtype(self.dtype).name if self.dtype is not None else None}
        if self.bounds is not None:
            out["bounds"] = list(self.bounds)
        if self.kinds is not None:
            out["sources"] = dict(self.kinds)
            out["resolved"] = {kind: _label(self.effective(kind)) for kind, _ in self.kinds}
            out["units"] = dict(self.units)
            if self.modalities:
                out["modalities"] = dict(self.modalities)
            out["sample"] = {"images": self.sampled, "of": self.total, "seed": FIT_SEED}
            out["header_windows"] = self.windowed
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_record(cls, record: dict) -> "IntensityRule":
        rule = cls.parse(record.get("rule", "auto"))
        bounds = record.get("bounds")
        kinds = record.get("sources")
        return replace(rule, bounds=tuple(float(b) for b in bounds) if bounds else None,
                       kinds=_pairs(kinds) if isinstance(kinds, dict) else None,
                       units=_pairs(record.get("units") or {}), modalities=_pairs(record.get("modalities") or {}),
                       sampled=int(record.get("sample", {}).get("images", 0)),
                       total=int(record.get("sample", {}).get("of", 0)),
                       windowed=int(record.get("header_windows", 0)), warnings=tuple(record.get("warnings", ())))


def _gets(effective: str, kind: str) -> str:
    """What ``auto`` / ``bitdepth`` / ``dicom-voi`` did to the training images of ``kind``."""
    if effective == EIGHT_BIT:
        return "divided by 255"
    if effective == "bitdepth":
        return ("by their stored range" if kind == "dicom" else "as stored" if kind == "float" else
                f"divided by {TOPS.get(kind, 255.0):g}")
    return "by their display range" if effective == "dicom-voi" else effective


class InputCheck:
    """One command's check of the images it feeds a run (``txkit predict``, ``evaluate``, ``colorize``,
    ``visualize``) against what the run's rule saw in training (:meth:`IntensityRule.unseen`): an image the rule
    cannot make meaningful is refused (DataError naming it), the others are warned about once per kind of input
    through ``warn`` (default: a :class:`txkit.errors.TxkitWarning`, which the CLI prints on stderr)."""

    def __init__(self, rule: IntensityRule, warn: Callable[[str], None] | None = None):
        self.rule = rule
        self.warn = warn or warn_user
        self.warned: set[tuple] = set()

    def __call__(self, info: dict, source) -> None:
        found = self.rule.unseen(info)
        if found is None:
            return
        if found.refuse:
            raise DataError(f"{source}: {found.message}")
        key = (source_kind(info), info.get("unit"), info.get("modality"))
        if key not in self.warned:
            self.warned.add(key)
            self.warn(f"{source}: {found.message}")

    def files(self, paths) -> None:
        """Image files from their headers, before any is converted, so a refusal comes before any work; files whose
        header cannot tell (unreadable, missing, mode I) are checked when :func:`load_file` reads them."""
        if self.rule.kinds is None:
            return
        for path in paths:
            info = probe_intensity(path)
            if info is not None:
                self(info, path)

    def split(self, split: Split) -> None:
        """The images of ``split`` that ``fit`` would sample (all up to FIT_SAMPLE, else the seeded draw), from
        their headers where they suffice, so a whole split is not decoded twice."""
        if self.rule.kinds is None:
            return
        for i in sample_indices(len(split)):
            try:
                info = _probe(split, i)
            except DataError:  # unreadable: the loader reports it (or skips it) as it always has
                continue
            self(info, _name(split, i))


def _label(effective: str) -> str:
    return "8-bit grey / 255" if effective == EIGHT_BIT else effective


def _pairs(counts) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((str(k), int(v)) for k, v in dict(counts).items()))


def _described(info: dict) -> str:
    if info.get("format") == "dicom":
        what = f"{info.get('modality') or 'no-modality'} DICOM in {info['unit']}"
        return what + (" (MONOCHROME1, inverted)" if info.get("photometric") == "MONOCHROME1" else "")
    unit = info["unit"]
    return f"{'an' if unit[0] in '8aeiou' else 'a'} {unit} image"


def sample_indices(n: int) -> list[int]:
    """Every index up to FIT_SAMPLE, else FIT_SAMPLE of them drawn with FIT_SEED (sorted)."""
    if n <= FIT_SAMPLE:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(FIT_SEED).choice(n, FIT_SAMPLE, replace=False))


def _probe(split: Split, index: int) -> dict:
    """An image's info from its file header when the split reads files, else from its values."""
    if split.sources is not None and getattr(split, "_read", None) is not None:
        info = probe_intensity(split.sources[index])
        if info is not None:
            return info
    return split.values(index)[1]


def _pixels(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float64).ravel()
    return flat if flat.size <= PIXELS_PER_IMAGE else flat[rng.integers(0, flat.size, PIXELS_PER_IMAGE)]


# --- applying a rule -----------------------------------------------------------------------------------------
def load_input(split: Split, index: int, size: int, rule: IntensityRule) -> np.ndarray:
    """Image ``index`` of ``split`` through ``rule``, resized to (size, size): ``uint8`` or ``float32``."""
    values, info = split.values(index)
    return convert(values, info, size, rule, _name(split, index))


def _name(split: Split, index: int) -> str:
    return split.ids[index] if split.named else f"image {index} of the split"


def load_file(path, size: int, rule: IntensityRule, missing: str = "check the path",
              check: InputCheck | None = None) -> np.ndarray:
    """One image file (``txkit predict``, ``colorize``, ``visualize``) through ``rule``, like :func:`load_input`;
    ``check`` refuses or warns about a kind of image the run never saw in training before it is converted."""
    values, info = read_intensity(path, missing=missing)
    if check is not None:
        check(info, path)
    return convert(values, info, size, rule, path)



def convert(values: np.ndarray, info: dict, size: int, rule: IntensityRule, source) -> np.ndarray:
    """Stored ``values`` with their ``info`` through ``rule``, resized; ``source`` names the image in errors."""
    how = rule.effective(source_kind(info))
    if how == EIGHT_BIT:
        small = resize_gray(np.asarray(values, dtype=np.uint8), size)
        return as_float(small) if rule.dtype == np.float32 else small
    values = np.asarray(values, dtype=np.float64)
    if values.size and not np.isfinite(values).all():
        raise DataError(f"{source}: has NaN or infinite pixel values; replace the image data")
    scaled = scale(values, info, how, rule, source)
    out = _resize_float(scaled, size)
    if rule.dtype == np.uint8:  # an image of a kind the fit sample missed, in a rule that otherwise keeps 8 bits
        return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)
    return out


def scale(values: np.ndarray, info: dict, how: str, rule: IntensityRule, source) -> np.ndarray:
    """``values`` (float64) by the rule ``how`` (one of the rule names), before resizing."""
    if how == "hu":
        if info.get("unit") != "HU":
            raise DataError(f"{source}: `intensity` hu needs CT in Hounsfield units, but this image is "
                            f"{_described(info)}; use `intensity` auto, dicom-voi or window:LEVEL:WIDTH")
        return values
    if how == "minmax":
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        return (values - low) / (high - low) if high > low else np.full_like(values, 0.5)
    if how == "window":
        level, width = rule.parameters
        return _linear(values, level - width / 2, level + width / 2)
    if how == "percentile":
        if rule.bounds is None:
            raise TxkitError(f"`intensity` {rule.text}: the rule has no percentile bounds yet; fit it on the "
                             f"training split first (IntensityRule.fit)")
        return _linear(values, *rule.bounds)
    if how == "dicom-voi":
        from txkit.datasets.dicom import display_range

        return _linear(values, *display_range(info))
    if info.get("format") == "dicom":  # bitdepth on DICOM: the stored range after the modality LUT
        low, high = info["range"]
        return _linear(values, low, high if high > low else low + 1.0)
    top = TOPS.get(info.get("unit"), 255.0)
    if values.size:  # bitdepth means "divide by the format's maximum": values beyond it have no such meaning
        from txkit.datasets.base import check_pixel_range

        limit = "float images must lie in [0, 1]" if info.get("unit") == "float" else f"the limit is {top:g}"
        check_pixel_range(values.min(), values.max(), top, source,
                          f"{limit} under `intensity` bitdepth (or choose percentile:LOW:HIGH, window or minmax)")
    return values / top


def _linear(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _resize_float(image: np.ndarray, size: int) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.shape == (size, size):
        return image
    from PIL import Image

    low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), dtype=np.float32)
    return np.clip(resized, low, high)


def run_rule(config_json: dict) -> IntensityRule:
    """The rule a run used, from its config.json: the fitted record, else its ``intensity`` (runs from before
    intensity rules: ``auto``, which on 8-bit data is what they used)."""
    record = (config_json.get("resolved") or {}).get("intensity")
    if isinstance(record, dict):
        return IntensityRule.from_record(record)
    return IntensityRule.parse((config_json.get("config") or {}).get("intensity") or "auto")
