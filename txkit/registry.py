"""Registries of named entries, one per kind, filled by plugins through the hooks in ``txkit.hookspecs``."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from txkit.errors import TxkitError, UnknownNameError

KINDS = ("backbone", "colorizer", "dataset", "strategy", "visualizer")
PLURALS = {"backbone": "backbones", "colorizer": "colorizers", "dataset": "datasets",
           "strategy": "strategies", "visualizer": "visualizers"}
# Arguments txkit itself passes to a factory, beside the user's options (never validated as options).
TXKIT_ARGUMENTS = {"dataset": ("root",), "backbone": ("num_classes", "pretrained")}


@dataclass
class Entry:
    kind: str
    name: str
    description: str
    provided_by: str
    factory: Callable[..., Any] | str
    options: type | str | None = None  # a txkit.options.Options subclass, or "package.module:Class"

    @property
    def is_family(self) -> bool:
        return self.name.endswith("*")

    def load_factory(self) -> Callable[..., Any]:
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def load_options(self):
        """The declared Options class (imported now when registered as a string), or None."""
        if self.options is None or not isinstance(self.options, str):
            return self.options
        module_name, _, attr = self.options.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def validate(self, options: dict) -> dict:
        """``options`` checked against the declared Options (unchanged when none is declared). The arguments
        txkit passes itself (a dataset's ``root``, a backbone's ``num_classes``) are not user options."""
        options_cls = self.load_options()
        if options_cls is None or self.kind == "backbone":
            return dict(options)
        from txkit.errors import DataError
        from txkit.options import validate_options

        own = {k: options[k] for k in TXKIT_ARGUMENTS.get(self.kind, ()) if k in options}
        given = {k: v for k, v in options.items() if k not in own}
        error = DataError if self.kind == "dataset" else TxkitError
        return {**own, **validate_options(self.label, options_cls, given, error)}

    def create(self, full_name: str | None = None, **options):
        factory = self.load_factory()
        options = self.validate(options)
        if self.is_family:
            options["variant"] = (full_name or self.name)[len(self.name) - 1:]
        return factory(**options)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "description": self.description,
                "provided_by": self.provided_by}

    def options_dict(self) -> dict:
        """What `txkit list KIND NAME --json` prints: the entry and its options."""
        from txkit.options import describe_options

        return {**self.as_dict(), "options": describe_options(self.load_options())}


@dataclass
class Registry:
    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)
    conflicts: dict[str, list[Entry]] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        if entry.name in self.conflicts:
            self.conflicts[entry.name].append(entry)
        elif entry.name in self.entries:
            self.conflicts[entry.name] = [self.entries.pop(entry.name), entry]
        else:
            self.entries[entry.name] = entry

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str) -> Entry:
        if name in self.conflicts:
            sources = " and ".join(repr(p) for p in sorted(e.provided_by for e in self.conflicts[name]))
            raise TxkitError(f"{self.kind} {name!r} is registered by both {sources}; "
                             f"uninstall one or limit plugins with TXKIT_PLUGINS")
        if name in self.entries:
            return self.entries[name]
        for family in (e for e in self.entries.values() if e.is_family):
            prefix = family.name[:-1]
            if name.startswith(prefix) and len(name) > len(prefix):
                return family
        raise UnknownNameError(self._unknown_message(name))

    def create(self, name: str, **options):
        return self.get(name).create(name, **options)

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; `txkit list {PLURALS[self.kind]}` shows them all"
        return f"no {self.kind} named {name!r}{hint}"
