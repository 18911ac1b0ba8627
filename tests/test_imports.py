"""No import circles inside the package: the imports between the modules of src/obliviate form graphs without cycles.

Two graphs: the module-level imports (what runs when a module is first imported: a cycle there is a partly
initialised module at import time), and every import, deferred ones inside functions included (a cycle there is two
modules that need each other, e.g. a registry and the module registering into it, which deferring only hides).
Imports under ``if TYPE_CHECKING:`` never run and are not edges.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "obliviate"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def module_name(path: Path) -> str:
    parts = (PACKAGE,) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _everywhere(body):
    """Every statement, in functions and classes too, but those under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _everywhere(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _everywhere(getattr(node, field, None) or [])


def _module_level(body):
    """Statements that run at import time: the top level, and the branches of top-level if/try/with blocks."""
    for node in body:
        if isinstance(node, ast.If):
            if _is_type_checking(node.test):
                yield from _module_level(node.orelse)
                continue
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)
        else:
            yield node


def imported_modules(name: str, path: Path, modules: set[str], deferred: bool = False) -> set[str]:
    """The package's modules that `name` imports at module level.

    ``from . import x`` names module ``x`` if there is one, else the package. A target's enclosing packages are edges
    too (importing ``a.b.c`` runs ``a/b/__init__``), except those enclosing `name` itself: they are always imported
    before `name` starts, so an edge back to them closes no circle.
    """
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    enclosing = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_package)}
    found = set()
    statements = _everywhere if deferred else _module_level
    for node in statements(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in modules and candidate != name and candidate not in enclosing:
                    found.add(candidate)
    return found


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    paths = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    modules = set(paths)
    return {name: imported_modules(name, path, modules, deferred) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, colours white / grey / black)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "black"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_graph_sees_the_package():
    graph, everything = import_graph(), import_graph(deferred=True)
    assert "obliviate.store" in graph["obliviate.grid"]                       # from .store import ... (top)
    assert "obliviate.text.data.tasks" in graph["obliviate.text.data.readers"]  # from .tasks import ...
    assert "obliviate.text.data.readers" in graph["obliviate.text.data"]        # from . import readers
    assert "obliviate.executors" not in graph["obliviate.grid"]                # imported inside functions only
    assert "obliviate.executors" in everything["obliviate.grid"]
    assert "obliviate.text" not in graph["obliviate.text.train"]               # an enclosing package is no edge


def test_find_cycle_names_the_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle)


def test_no_import_cycles_through_deferred_imports():
    cycle = find_cycle(import_graph(deferred=True))
    assert cycle is None, "import cycle (deferred imports included): " + " -> ".join(cycle)


# ------------------------------------------------------------------------------- the layers of docs/ARCHITECTURE.md

FAMILIES = ("vision", "text", "vlm")
FOUNDATION = {PACKAGE} | {f"{PACKAGE}.{m}" for m in
                          ("errors", "config", "registry", "task", "data", "loop", "store", "method", "rows", "presets")}
ENGINE = {f"{PACKAGE}.{m}" for m in ("grid", "executors", "report", "plots", "challenge")}
FACES = {f"{PACKAGE}.{m}" for m in ("cli", "report_cli", "methods_list")}
# family modules that use the engine: the grid families, and the tables drawn from labelled rows
USES_ENGINE = ("family", "tables", "report")


def family_of(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FAMILIES else None


def is_command_module(module: str) -> bool:
    return module.rsplit(".", 1)[-1] in ("cli", "select_cli")


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            fa, fb = family_of(a), family_of(b)
            if fa and fb and fa != fb:
                out.append(f"{a} -> {b}: the families never import each other")
            elif a in FOUNDATION and (fb or b in ENGINE or b in FACES):
                out.append(f"{a} -> {b}: the foundation imports only the foundation")
            elif a in ENGINE and (fb or b in FACES):
                out.append(f"{a} -> {b}: the engine reaches families only through the Family object it is given")
            elif fa and not is_command_module(a) and (b in FACES or is_command_module(b)):
                out.append(f"{a} -> {b}: only command modules belong to layer 4")
            elif fa and not is_command_module(a) and b in ENGINE and a.rsplit(".", 1)[-1] not in USES_ENGINE:
                out.append(f"{a} -> {b}: only a family's family.py and its tables use the engine")
    return out


def test_layers_hold():
    assert layer_violations(import_graph(deferred=True)) == []


def test_layer_violations_are_named():
    graph = {"obliviate.text.run": {"obliviate.vision.data", "obliviate.grid"}, "obliviate.store": {"obliviate.grid"}}
    assert layer_violations(graph) == [
        "obliviate.store -> obliviate.grid: the foundation imports only the foundation",
        "obliviate.text.run -> obliviate.grid: only a family's family.py and its tables use the engine",
        "obliviate.text.run -> obliviate.vision.data: the families never import each other"]
