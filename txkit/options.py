"""Typed options of registered entries (datasets, colorizers, strategies, visualizers), after llm's ``Options``.

An entry declares its options as a subclass of :class:`Options`, one pydantic field per option, each with a
default and a help text::

    from pydantic import Field
    from txkit.options import Options

    class StripesOptions(Options):
        seed: int = Field(0, description="seed of the generator")
        size: int = Field(32, ge=8, description="image side in pixels")
        noisy: bool = Field(True, description="add Gaussian noise")

and registers it with ``register(name, factory, description, options=StripesOptions)`` (or, to keep the hook
module light, ``options="package.module:StripesOptions"``). txkit then

* validates what the user gave (``--data-option size=64``, ``--colorizer-option ...``, an experiment file)
  before calling the factory, which receives every option, defaults filled in, as plain keyword arguments;
* turns a mistake into one line: ``dataset 'csv': unknown option 'path_colum'; did you mean 'path_column'?
  (txkit list dataset csv shows them)`` or ``dataset 'csv': option val_fraction=2: must be <= 0.9``;
* shows the options with ``txkit list KIND NAME`` (name, type, default, help).

Unknown options are refused (``extra="forbid"``). Values are coerced from the strings the command line passes:
``"6"`` is an int, ``"0.2"`` a float, ``true/false/1/0/yes/no/on/off`` a bool, and a number given for a text
option becomes text. Checks beyond one field's type and range go in a pydantic ``field_validator`` or
``model_validator`` that raises ``ValueError("message")``; the message is shown after the option's name.

Options whose names follow a pattern (CheXpert's ``policy_<LABEL>``) are declared in the class variable
``patterns = {"policy_<LABEL>": "help"}``: a given option starting with the text before ``<`` is passed to the
factory as given, unvalidated, for the factory to check.

This module imports pydantic only (no torch, no numpy), so plugins can import it from their hook modules.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, ClassVar

import pydantic
from pydantic import ConfigDict, Field

import txkit.pydantic_guard  # noqa: F401 - before the first model class
from txkit.errors import TxkitError

__all__ = ["Field", "NoOptions", "Options", "check_fractions", "default_text", "describe_options", "type_text",
           "validate_options"]


class Options(pydantic.BaseModel):
    """Base class of an entry's options: one field per option, ``Field(default, description="help", ...)``."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)

    patterns: ClassVar[dict[str, str]] = {}


class NoOptions(Options):
    """The options of an entry that takes none: any option given is refused."""


def check_fractions(options):
    """For a ``model_validator(mode="after")``: ``val_fraction + test_fraction`` must leave images for train."""
    total = getattr(options, "val_fraction", 0.0) + getattr(options, "test_fraction", 0.0)
    if total >= 1:
        raise ValueError(f"val_fraction + test_fraction must be below 1, got {total:g}")
    return options


def validate_options(entry_label: str, options_cls: type[Options], given: dict,
                     error: type[TxkitError] = TxkitError) -> dict:
    """``given`` checked against ``options_cls``: every option, defaults filled in, as plain kwargs.

    ``entry_label`` names the entry in messages (``"dataset 'csv'"``); a problem raises ``error`` (a
    :class:`~txkit.errors.TxkitError`) with a one-line message.
    """
    prefixes = tuple(pattern.split("<", 1)[0] for pattern in options_cls.patterns)
    patterned = {k: v for k, v in given.items() if prefixes and isinstance(k, str) and k.startswith(prefixes)
                 and k not in options_cls.model_fields}
    rest = {k: v for k, v in given.items() if k not in patterned}
    try:
        model = options_cls.model_validate(rest)
    except pydantic.ValidationError as exc:
        raise error(_message(entry_label, options_cls, rest, exc)) from None
    values = {name: getattr(model, name) for name in options_cls.model_fields}
    values.update(patterned)
    return values


def _message(label: str, options_cls: type[Options], given: dict, exc: pydantic.ValidationError) -> str:
    errors = exc.errors(include_url=False)
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    if unknown:
        return _unknown_message(label, options_cls, unknown)
    first = errors[0]
    if not first["loc"]:  # a model_validator: a rule across options
        return f"{label}: {_reason(first, None)}"
    name = str(first["loc"][0])
    value = given.get(name, first.get("input"))
    return f"{label}: option {name}={_shown(value)}: {_reason(first, options_cls.model_fields.get(name))}"


def _unknown_message(label: str, options_cls: type[Options], unknown: list[str]) -> str:
    valid = list(options_cls.model_fields) + list(options_cls.patterns)
    shows = f"(txkit list {_list_args(label)} shows them)"
    if not valid:
        return f"{label}: takes no options (got {', '.join(unknown)})"
    if len(unknown) == 1:
        close = difflib.get_close_matches(unknown[0], valid, n=1, cutoff=0.6)
        if close:
            return f"{label}: unknown option {unknown[0]!r}; did you mean {close[0]!r}? {shows}"
    return f"{label}: unknown option(s) {', '.join(sorted(unknown))}; valid: {', '.join(valid)} {shows}"


def _list_args(label: str) -> str:
    """``dataset 'csv'`` -> ``dataset csv``."""
    kind, _, name = label.partition(" ")
    return f"{kind} {name.strip(chr(39))}" if name else kind


def _shown(value) -> str:
    return value if isinstance(value, str) else repr(value)


def _reason(error: dict, field) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be an integer"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false (or 1/0, yes/no)"
    if kind in ("string_type",):
        return "must be text"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"must be {bounds[kind]} {limit}"
    if kind == "literal_error":
        choices = _choices(field.annotation) if field is not None else None
        return f"must be one of {', '.join(map(str, choices))}" if choices else error["msg"]
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _choices(annotation) -> list | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return list(typing.get_args(arg))
    return None


def type_text(field) -> str:
    """A short name of a field's type: ``int``, ``float | none``, ``one of a, b``."""
    return _type_name(field.annotation)


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "none"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))


def default_text(value: Any) -> str:
    """A default as the command line would spell it: ``none``, ``true``, ``0.15``, ``path``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_options(options_cls: type[Options] | None) -> list[dict]:
    """[{"name", "type", "default", "help"}] of every option, patterns last (type "pattern")."""
    if options_cls is None:
        return []
    rows = [{"name": name, "type": type_text(field), "default": _json_default(field.get_default()),
             "help": field.description or ""} for name, field in options_cls.model_fields.items()]
    rows += [{"name": pattern, "type": "pattern", "default": None, "help": help_text}
             for pattern, help_text in options_cls.patterns.items()]
    return rows


def _json_default(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
