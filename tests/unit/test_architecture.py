"""The house rules that keep the package walkable, checked on the source itself.

Only ``molvae.chem`` imports RDKit, only ``molvae.tracking`` imports MLflow, no module-level
import cycles, and no module longer than ~350 lines.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "molvae"
MAX_LINES = 350
WALLS = {"rdkit": "molvae.chem", "mlflow": "molvae.tracking"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules a file imports (``from a import b`` counts as a.b when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if f"{node.module}.{a.name}" in MODULES)
    return found


@pytest.mark.parametrize("library", sorted(WALLS))
def test_heavy_libraries_stay_behind_their_wall(library: str) -> None:
    home = WALLS[library]
    offenders = sorted(name for name, path in MODULES.items()
                       if not (name == home or name.startswith(home + "."))
                       and any(m == library or m.startswith(library + ".")
                               for m in imports(path, top_level_only=False)))
    assert not offenders, f"{library} imported outside {home}: {offenders}"


def test_no_import_cycles() -> None:
    graph = {name: {m for m in imports(path, top_level_only=True) if m in MODULES}
             for name, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(
                    trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_modules_stay_short() -> None:
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_checks_see_what_they_guard() -> None:
    """The walls above would pass vacuously if the parser missed imports."""
    assert "rdkit" in imports(MODULES["molvae.chem.mol"], top_level_only=False)
    assert "molvae.chem" in imports(MODULES["molvae.data.tokens"], top_level_only=True)
    assert any(m.startswith("mlflow") for m in
               imports(MODULES["molvae.tracking.runs"], top_level_only=False))
