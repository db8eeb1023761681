"""Plugins use txkit's documented public API only (issue 12, item 5).

Every .py of the bundled plugins (plugins/*/) and of the plugin template (examples/txkit-plugin-template/)
may import txkit only from PUBLIC_MODULES, and every name it imports from them must be listed in the
"Public API" section of docs/plugins.md. Their tests/ folders are not checked: tests may reach into internals
(``txkit.plugins.create``, ``txkit.network.TxNet``) to build fixtures and check results, which is not what a
plugin's own code depends on. build/ folders are setuptools copies of the sources and are skipped too.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = {"txkit", "txkit.errors", "txkit.datasets", "txkit.visualizers", "txkit.options"}
SKIPPED_DIRS = {"tests", "build", "__pycache__"}


def plugin_sources() -> list[Path]:
    roots = sorted(p for p in (ROOT / "plugins").iterdir() if p.is_dir())
    roots.append(ROOT / "examples" / "txkit-plugin-template")
    files = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).parts[:-1]
            if not SKIPPED_DIRS.intersection(parts) and not any(p.endswith(".egg-info") for p in parts):
                files.append(path)
    return files


def txkit_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None for ``import module``) of each import of txkit or a submodule."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names
                      if alias.name == "txkit" or alias.name.startswith("txkit.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "txkit" or node.module.startswith("txkit.")):
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


def documented_names() -> set[str]:
    """Identifiers in backticks in docs/plugins.md's "## Public API" section (up to the next ## heading)."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    match = re.search(r"^## Public API\b.*?(?=^## |\Z)", text, flags=re.M | re.S)
    if not match:
        return set()
    names = set()
    for quoted in re.findall(r"`([^`\n]+)`", match.group(0)):
        names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", quoted))
    return names


SOURCES = plugin_sources()


def test_the_plugins_and_the_template_are_found():
    names = {p.relative_to(ROOT).parts[1] for p in SOURCES}
    assert {"txkit-desalinet", "txkit-gradcam", "txkit-plugin-template"} <= names, names


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_plugin_imports_only_documented_public_txkit_names(path):
    documented = documented_names()
    problems = []
    for line, module, name in txkit_imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if name is not None and f"{module}.{name}" in PUBLIC_MODULES:
            continue  # `from txkit import visualizers`: a public module
        if module not in PUBLIC_MODULES:
            problems.append(f"{where}: imports {module}{'.' + name if name else ''}; public modules are "
                            f"{', '.join(sorted(PUBLIC_MODULES))}")
        elif name is not None and name != "*" and name not in documented:
            problems.append(f"{where}: {module}.{name} is not listed in docs/plugins.md's Public API section")
        elif name == "*":
            problems.append(f"{where}: star import from {module}")
    assert not problems, "\n".join(problems)


def test_the_visualizer_facade_exports_what_its_docs_list():
    """Each name of ``txkit.visualizers.__all__`` is documented, and each is importable."""
    import txkit.visualizers as facade

    documented = documented_names()
    missing = [name for name in facade.__all__ if name not in documented]
    assert not missing, f"txkit.visualizers exports {missing} but docs/plugins.md's Public API does not list them"
    for name in facade.__all__:
        assert getattr(facade, name) is not None
