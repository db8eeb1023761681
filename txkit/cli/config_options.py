"""``txkit train``'s options, derived from :class:`txkit.config.TrainConfig`: a field's type, default and help
text live in the config alone. Closed choices become ``click.Choice``, bounded numbers ranges, booleans
``--x/--no-x`` flags and tables repeatable ``KEY=VALUE`` options."""

from __future__ import annotations

import types
import typing

import annotated_types
import click

from txkit.cli.group import remember_cache_dir
from txkit.cli.options import complete_names, parse_key_values
from txkit.config import TrainConfig, field_flag


def config_options(command):
    """Decorate a click command with one option per TrainConfig field (first field outermost)."""
    for name in reversed(list(TrainConfig.model_fields)):
        command = field_option(name)(command)
    return command


def field_option(name: str):
    """The click option of one TrainConfig field (for commands that take a few of them)."""
    return click.option(*_declaration(name), **_option_kwargs(name))


def config_from_options(options: dict) -> TrainConfig:
    """The TrainConfig of the parsed options (``KEY=VALUE`` tables parsed, the rest as given)."""
    values = {}
    for name, info in TrainConfig.model_fields.items():
        value = options.pop(name)
        if _base(info.annotation) is dict:
            value = parse_key_values(value, field_flag(name))
        values[name] = value
    return TrainConfig.create(**values)


def _declaration(name: str) -> list[str]:
    flag = field_flag(name)
    if _base(TrainConfig.model_fields[name].annotation) is bool:
        return [f"{flag}/--no-{flag[2:]}", name]
    return [flag, name]


def _option_kwargs(name: str) -> dict:
    info = TrainConfig.model_fields[name]
    extra = info.json_schema_extra or {}
    base = _base(info.annotation)
    kwargs = {"help": info.description, "show_default": True}
    if base is dict:
        return {**kwargs, "multiple": True, "metavar": extra.get("metavar", "KEY=VALUE"), "show_default": False}
    kwargs["default"] = info.get_default(call_default_factory=True)
    kwargs["type"] = _click_type(info, base)
    if extra.get("registry"):
        kwargs["shell_complete"] = complete_names(extra["registry"])
    if extra.get("metavar") or extra.get("path"):
        kwargs["metavar"] = extra.get("metavar", "PATH")
    if kwargs["default"] is None:
        kwargs["show_default"] = False
    if name == "cache_dir":
        kwargs["callback"] = remember_cache_dir
    return kwargs


def _click_type(info, base):
    choices = _choices(info.annotation)
    if choices and len(_args(info.annotation)) > 1:
        return WordOrInt(choices)
    if choices:
        return click.Choice(choices)
    if base in (int, float):
        bounds = {type(m): m for m in info.metadata}
        low = bounds.get(annotated_types.Ge) or bounds.get(annotated_types.Gt)
        high = bounds.get(annotated_types.Le) or bounds.get(annotated_types.Lt)
        if low is None and high is None:
            return base
        kind = click.IntRange if base is int else click.FloatRange
        extra = {} if base is int else {"min_open": annotated_types.Gt in bounds,
                                        "max_open": annotated_types.Lt in bounds}
        return kind(min=_bound(low), max=_bound(high), **extra)
    if base is bool:
        return bool
    return click.STRING


class WordOrInt(click.ParamType):
    """A field that takes a word or a number (``num_workers``: auto|N); the config checks the number's range."""

    name = "word-or-integer"

    def __init__(self, words):
        self.words = list(words)

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value in self.words:
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not {' or '.join(self.words)} or a whole number", param, ctx)


def _bound(constraint):
    if constraint is None:
        return None
    return next(getattr(constraint, a) for a in ("ge", "gt", "le", "lt") if hasattr(constraint, a))


def _args(annotation) -> tuple:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def _choices(annotation) -> list[str] | None:
    for arg in _args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            return list(typing.get_args(arg))
    return None


def _base(annotation):
    arg = _args(annotation)[0]
    if typing.get_origin(arg) is typing.Literal:
        return type(typing.get_args(arg)[0])
    if typing.get_origin(arg) is typing.Annotated:
        return typing.get_args(arg)[0]
    return typing.get_origin(arg) or arg
