"""Load plugins from the ``txkit`` entry-point group, each inside its own guard, and fill the registries.

``TXKIT_PLUGINS`` limits what loads: unset loads everything; ``none`` (or empty) loads only txkit's
built-ins; ``a,b`` loads the built-ins plus the distributions (or entry points) named ``a`` and ``b``.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from types import ModuleType
from typing import Iterable

import pluggy

from txkit import hookspecs
from txkit.registry import KINDS, PLURALS, Entry, Registry

ENTRY_POINT_GROUP = "txkit"
CORE_DISTRIBUTION = "txkit"


@dataclass
class PluginInfo:
    """One plugin distribution as ``txkit plugins`` shows it."""

    distribution: str
    version: str
    modules: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.distribution, "version": self.version, "modules": self.modules,
                "hooks": sorted(set(self.hooks)), "errors": self.errors}


class PluginSet:
    """The loaded plugins and the registries they filled."""

    def __init__(self):
        self.manager = pluggy.PluginManager("txkit")
        self.manager.add_hookspecs(hookspecs)
        self.registries = {kind: Registry(kind) for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self._owner: dict[int, PluginInfo] = {}

    def load_entry_points(self, allowed: set[str] | None) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ep.module.split(".")[0]
            version = ep.dist.version if ep.dist else "unknown"
            if not _is_allowed(dist, ep.name, allowed):
                continue
            info = self.plugins.setdefault(dist, PluginInfo(dist, version))
            try:
                module = ep.load()
            except Exception as exc:  # any import failure of one plugin must not break the others
                info.errors.append(f"cannot import {ep.value}: {_describe(exc)}")
                continue
            self.add_module(module, info, name=f"{dist}:{ep.name}")

    def add_module(self, module: ModuleType | object, info: PluginInfo, name: str | None = None) -> None:
        """Register a plugin object (also used by tests to add a plugin in-process)."""
        self.plugins.setdefault(info.distribution, info)
        try:
            self.manager.register(module, name=name)
        except Exception as exc:
            info.errors.append(f"cannot register {name}: {_describe(exc)}")
            return
        info.modules.append(getattr(module, "__name__", str(name)))
        self._owner[id(module)] = info
        info.hooks.extend(impl.name for impl in self.manager.get_hookcallers(module) or [])

    def fill_registries(self) -> None:
        for kind in KINDS:
            hook = getattr(self.manager.hook, f"register_{PLURALS[kind]}")
            for impl in hook.get_hookimpls():
                info = self._owner.get(id(impl.plugin)) or PluginInfo(impl.plugin_name, "unknown")
                pending: list[Entry] = []
                if self.call_guarded(impl, info, register=self._register_callback(kind, info, pending)):
                    for entry in pending:  # a hook that raised registers nothing
                        self.registries[kind].add(entry)

    def call_guarded(self, impl, info: PluginInfo, **kwargs) -> bool:
        try:
            impl.function(**kwargs)
            return True
        except Exception as exc:
            info.errors.append(f"{impl.function.__name__} failed: {_describe(exc)}")
            return False

    def command_hooks(self):
        for impl in self.manager.hook.register_commands.get_hookimpls():
            yield impl, self._owner.get(id(impl.plugin)) or PluginInfo(impl.plugin_name, "unknown")

    @staticmethod
    def _register_callback(kind: str, info: PluginInfo, pending: list):
        def register(name: str, factory, description: str = "") -> None:
            pending.append(Entry(kind, name, description, info.distribution, factory))
        return register

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def entries(self, kinds: Iterable[str] = KINDS) -> list[Entry]:
        out = []
        for kind in kinds:
            reg = self.registries[kind]
            out.extend(reg.entries.values())
            for clashing in reg.conflicts.values():
                out.extend(clashing)
        return sorted(out, key=lambda e: (KINDS.index(e.kind), e.name, e.provided_by))

    def conflicts(self) -> list[tuple[str, str, list[str]]]:
        return [(kind, name, [e.provided_by for e in entries])
                for kind in KINDS for name, entries in self.registries[kind].conflicts.items()]


def allowed_from_env() -> set[str] | None:
    value = os.environ.get("TXKIT_PLUGINS")
    if value is None:
        return None
    names = {part.strip() for part in value.split(",") if part.strip()}
    return set() if names <= {"none"} else names


def _is_allowed(dist: str, ep_name: str, allowed: set[str] | None) -> bool:
    if allowed is None or dist == CORE_DISTRIBUTION:
        return True
    return dist in allowed or ep_name in allowed


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


@lru_cache(maxsize=1)
def get_plugins() -> PluginSet:
    """The process-wide plugin set, loaded once."""
    plugins = PluginSet()
    plugins.load_entry_points(allowed_from_env())
    plugins.fill_registries()
    return plugins


def registry(kind: str) -> Registry:
    return get_plugins().registry(kind)


def create(kind: str, name: str, **options):
    """Build the entry ``name`` of ``kind`` with the given options."""
    return registry(kind).create(name, **options)
