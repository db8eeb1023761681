"""The module map holds: no import cycle among txkit's modules or its top-level packages, counting imports made
inside functions (they let a cycle live without an ImportError), and no library module importing the CLI or
the Python API (they are the top floor). docs/architecture.md draws the map."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "txkit"
TOP_FLOOR = {"cli", "api", "__main__"}  # the CLI and the Python API may import anything below them


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_edges() -> dict[str, set[str]]:
    """module -> the txkit modules it imports anywhere in its source (module level or inside functions)."""
    mods = modules()
    edges = {name: set() for name in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "txkit") and target.startswith("txkit."):
                    edges[name].add(target)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_no_import_cycle_among_modules_counting_imports_inside_functions():
    assert cycles(import_edges()) == []


def test_no_import_cycle_among_top_level_packages():
    packages: dict[str, set[str]] = {}
    for module, targets in import_edges().items():
        if top(module) in TOP_FLOOR:
            continue
        packages.setdefault(top(module), set()).update(top(t) for t in targets if top(t) != top(module))
    assert cycles(packages) == []


def test_no_library_module_imports_the_cli_or_the_api():
    upward = [(m, t) for m, targets in import_edges().items() if top(m) not in TOP_FLOOR
              for t in targets if top(t) in ("cli", "api")]
    assert upward == []


def test_the_checker_finds_a_cycle_hidden_inside_a_function():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    graph = import_edges()
    assert "txkit.data.loader" in graph["txkit.training.engine"]  # module-level import seen
    assert "txkit.run.predict" in graph["txkit.experiments.predictions"]  # import inside a function seen
