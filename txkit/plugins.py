"""Load plugins from the ``txkit`` entry-point group, each inside its own guard, and fill the registries.

``TXKIT_PLUGINS`` limits what loads: unset loads everything; ``none`` (or empty) loads only txkit's
built-ins; ``a,b`` loads the built-ins plus the distributions (or entry points) named ``a`` and ``b``.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from types import ModuleType
from typing import Iterable

import click
import pluggy

from txkit import hookspecs
from txkit.errors import TxkitError
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
                "hooks": sorted(set(self.hooks)), "errors": list(self.errors)}


class PluginSet:
    """The loaded plugins and the registries they filled."""

    def __init__(self):
        self.manager = pluggy.PluginManager("txkit")
        self.manager.add_hookspecs(hookspecs)
        self.registries = {kind: Registry(kind) for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self._owner: dict[int, PluginInfo] = {}
        self.command_owners: dict[str, str] = {}  # command name -> plugin distribution that added it

    def load_entry_points(self, allowed: set[str] | None) -> None:
        for found in installed_plugins():
            chosen = [ep for ep in found.entry_points if _is_allowed(found.name, ep.name, allowed)]
            if not chosen and not (found.errors and _is_allowed(found.name, None, allowed)):
                continue
            info = self.plugins.setdefault(found.name, PluginInfo(found.name, found.version))
            info.errors.extend(found.errors)
            for ep in chosen:
                self.load_entry_point(ep, info)

    def load_entry_point(self, ep: metadata.EntryPoint, info: PluginInfo) -> None:
        try:
            with _plugin_output():
                module = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # any failure of one plugin, SystemExit included, must not break the others
            info.errors.append(f"cannot import {ep.value}: {_describe(exc)}")
            return
        self.add_module(module, info, name=f"{info.distribution}:{ep.name}")

    def add_module(self, module: ModuleType | object, info: PluginInfo, name: str | None = None) -> None:
        """Register a plugin object (also used by tests to add a plugin in-process)."""
        self.plugins.setdefault(info.distribution, info)
        try:
            self.manager.register(module, name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # e.g. PluginValidationError: a hook with other argument names
            info.errors.append(f"cannot register {name}: {_describe(exc)}")
            if name is not None and self.manager.get_plugin(name) is module:
                self.manager.unregister(name=name)
            return
        info.modules.append(getattr(module, "__name__", str(name)))
        self._owner[id(module)] = info
        callers = self.manager.get_hookcallers(module) or []
        info.hooks.extend(caller.name for caller in callers)
        info.errors.extend(_hook_problems(name, callers))

    def fill_registries(self) -> None:
        for kind in KINDS:
            hook = getattr(self.manager.hook, f"register_{PLURALS[kind]}")
            for impl in hook.get_hookimpls():
                info = self.owner(impl)
                pending: list[Entry] = []
                if self.call_guarded(impl, info, register=self._register_callback(kind, info, pending)):
                    for entry in pending:  # a hook that raised registers nothing
                        self.registries[kind].add(entry)

    def owner(self, impl) -> PluginInfo:
        return self._owner.get(id(impl.plugin)) or PluginInfo(impl.plugin_name, "unknown")

    def call_guarded(self, impl, info: PluginInfo, **kwargs) -> bool:
        """Call one hook implementation; any failure is recorded on ``info`` and the hook counts as not run."""
        try:
            with _plugin_output():
                _call(impl, **kwargs)
            return True
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            info.errors.append(f"{getattr(impl, 'hook_name', impl.function.__name__)} failed: {_describe(exc)}")
            return False

    def command_hooks(self):
        """(hook, info) pairs for ``call_guarded(hook, info, cli=group)``; each hook adds only valid commands
        with new names (see :class:`CommandHook`)."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            info = self.owner(impl)
            yield CommandHook(impl, info, self.command_owners), info

    def add_commands(self, group: click.Group) -> None:
        """Let every register_commands hook add its commands to ``group``."""
        for hook, info in self.command_hooks():
            self.call_guarded(hook, info, cli=group)

    @staticmethod
    def _register_callback(kind: str, info: PluginInfo, pending: list):
        def register(name: str, factory, description: str = "", *, options=None) -> None:
            problem = _entry_problem(name, factory, description) or _options_problem(options)
            if problem:
                info.errors.append(f"register_{PLURALS[kind]} ({_caller()}): {kind} {name!r} not registered: "
                                   f"{problem}")
                return
            pending.append(Entry(kind, name, description, info.distribution, factory, options))
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


class CommandHook:
    """A register_commands implementation run on the real group, with what it added checked afterwards: a
    command that is not a click command, cannot show its help, or takes a name already there is taken out
    again (the earlier command stays), and a hook that raises adds nothing."""

    hook_name, argnames = "register_commands", ("cli",)

    def __init__(self, impl, info: PluginInfo, owners: dict[str, str]):
        self.impl, self.info, self.owners = impl, info, owners

    def function(self, cli: click.Group) -> None:
        before = dict(cli.commands)
        try:
            _call(self.impl, cli=cli)
        except BaseException:
            _restore(cli, before)
            raise
        for name, command in list(cli.commands.items()):
            if before.get(name) is command:
                continue
            problem = self._problem(name, command, before)
            if problem:
                _restore(cli, before, name)
                self.info.errors.append(f"register_commands: command {name!r} not added: {problem}")
            else:
                self.owners[name] = self.info.distribution

    def _problem(self, name, command, before: dict) -> str | None:
        if name in before:
            owner = self.owners.get(name)
            return f"plugin {owner} already added it" if owner else "txkit has a command of that name"
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            return "its name must be a non-empty word"
        if not isinstance(command, click.Command):
            return f"{type(command).__name__} is not a click command"
        try:
            command.get_short_help_str()
            command.get_help(click.Context(command, info_name=name))
        except Exception as exc:
            return f"its help cannot be shown ({_describe(exc)})"
        return None


def _call(impl, **kwargs) -> None:
    """Call a hook implementation with the arguments it names, as pluggy would."""
    wanted = getattr(impl, "argnames", None)
    impl.function(**{k: v for k, v in kwargs.items() if wanted is None or k in wanted})


def _restore(cli: click.Group, before: dict, name: str | None = None) -> None:
    """Undo what a hook did to the group's commands: all of it, or only to ``name``."""
    names = [name] if name is not None else list(set(cli.commands) | set(before))
    for key in names:
        if key in before:
            cli.commands[key] = before[key]
        else:
            cli.commands.pop(key, None)


@dataclass
class FoundPlugin:
    """An installed distribution with ``txkit`` entry points, and what was wrong with its metadata."""

    name: str
    version: str
    entry_points: list[metadata.EntryPoint]
    errors: list[str] = field(default_factory=list)


def installed_plugins() -> list[FoundPlugin]:
    """Every distribution with a [txkit] entry-point section, each read in its own guard: a broken one
    (unreadable entry_points.txt, METADATA without a name) is reported, not fatal. Like importlib, the first
    of two distributions with one name on sys.path wins."""
    found, seen = [], set()
    for dist in metadata.distributions():
        if f"[{ENTRY_POINT_GROUP}]" not in _read_text(dist, "entry_points.txt"):
            continue  # cheap, and some other package's broken metadata is not txkit's to report
        name = _metadata_field(dist, "name")
        key = re.sub(r"[-_.]+", "-", name).lower() if name else id(dist)
        if key not in seen:
            seen.add(key)
            found.append(_read_plugin(dist, name))
    return found


def _read_plugin(dist: metadata.Distribution, name: str | None) -> FoundPlugin:
    errors = []
    try:
        entry_points = list(dist.entry_points.select(group=ENTRY_POINT_GROUP))
    except Exception as exc:
        entry_points = []
        errors.append(f"cannot read its entry_points.txt ({_describe(exc)}); reinstall it")
    if not name:
        errors.append("its METADATA has no Name (a broken installation); reinstall it")
        name = entry_points[0].module.split(".")[0] if entry_points else "(unnamed distribution)"
    return FoundPlugin(name, _metadata_field(dist, "version") or "unknown", entry_points, errors)


def _metadata_field(dist: metadata.Distribution, attr: str) -> str | None:
    try:
        value = getattr(dist, attr)
    except Exception:  # a missing or unreadable METADATA
        return None
    return value if isinstance(value, str) and value else None


def _read_text(dist: metadata.Distribution, filename: str) -> str:
    try:
        return dist.read_text(filename) or ""
    except Exception:
        return ""


@contextmanager
def _plugin_output():
    """What a plugin prints goes to stderr, so it cannot corrupt the JSON that `--json` prints on stdout."""
    with redirect_stdout(sys.stderr):
        yield


def _hook_problems(name: str | None, callers) -> list[str]:
    if not callers:
        return [f"{name} implements no txkit hook (@txkit.hookimpl on register_backbones, ...); it adds nothing"]
    known = [f"register_{plural}" for plural in PLURALS.values()] + ["register_commands"]
    return [f"{caller.name} is not a txkit hook{_close_hook(caller.name, known)}; it is never called"
            for caller in callers if not caller.has_spec()]


def _close_hook(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {match[0]}?)" if match else ""


def _entry_problem(name, factory, description) -> str | None:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        return "the name must be a non-empty string without spaces"
    if name == "*" or "*" in name[:-1]:
        return "'*' may only end a family name such as 'timm/*'"
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        if not module or not attr:
            return f"the factory string {factory!r} must read 'package.module:function'"
    elif not callable(factory):
        return f"the factory {factory!r} is neither callable nor a 'package.module:function' string"
    if not isinstance(description, str):
        return f"the description must be a string, got {description!r}"
    return None


def _options_problem(options) -> str | None:
    """``options=`` must be None, a txkit.options.Options subclass, or a 'package.module:Class' string (imported
    only when the entry is shown or used, like a factory string)."""
    if options is None:
        return None
    if isinstance(options, str):
        module, _, attr = options.partition(":")
        if not module or not attr:
            return f"the options string {options!r} must read 'package.module:OptionsClass'"
        return None
    from txkit.options import Options

    if not (isinstance(options, type) and issubclass(options, Options)):
        return f"options={options!r} is neither a txkit.options.Options subclass nor a 'package.module:Class' string"
    return None


def _caller() -> str:
    """file:line of the plugin code that called register()."""
    frame = sys._getframe(2)
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def allowed_from_env() -> set[str] | None:
    value = os.environ.get("TXKIT_PLUGINS")
    if value is None:
        return None
    names = {part.strip() for part in value.split(",") if part.strip()}
    return set() if names <= {"none"} else names


def _is_allowed(dist: str, ep_name: str | None, allowed: set[str] | None) -> bool:
    if allowed is None or dist == CORE_DISTRIBUTION:
        return True
    return dist in allowed or ep_name in allowed


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
    message = " ".join(str(exc).split())  # one line, whatever the exception's own layout
    return f"{type(exc).__name__}{': ' + message if message else ''}{where}"


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
    """Build the entry ``name`` of ``kind`` with the given options.

    A plugin's factory that cannot be imported, or that fails in a way it did not report as a TxkitError,
    is one line naming the plugin; txkit's own factories keep their tracebacks (those are txkit's bugs).
    """
    entry = registry(kind).get(name)
    try:
        entry.load_factory()
    except Exception as exc:
        raise TxkitError(f"{kind} {name!r} of {entry.provided_by}: cannot import its factory {entry.factory!r} "
                         f"({_describe(exc)}); reinstall or uninstall {entry.provided_by}") from None
    if entry.provided_by == CORE_DISTRIBUTION:
        return entry.create(name, **options)
    try:
        return entry.create(name, **options)
    except TxkitError:
        raise
    except Exception as exc:
        raise TxkitError(f"{kind} {name!r} of plugin {entry.provided_by} failed: {_describe(exc)}; "
                         f"check its options or report it to the plugin's authors") from None
