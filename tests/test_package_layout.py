"""The package's shape: no import cycle in python/pixcon, the loss op's argument list named in
few places, and no test oracle in the product's public headers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "pixcon"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The pixcon modules ``path`` imports when it is imported (not under TYPE_CHECKING)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module:
                    found.add(target)
                else:
                    found.update(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("pixcon."))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pixcon"):
                found.add(node.module)
            for field in ("body", "orelse", "finalbody", "handlers"):
                if isinstance(node, (ast.If, ast.Try, ast.ExceptHandler)) and hasattr(node, field):
                    visit(getattr(node, field))

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = _graph()
    assert "pixcon.nn" in graph and graph["pixcon.nn"], "the import graph was not read"
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_loss_op_argument_list_is_named_in_at_most_four_files():
    names = ("anchor_mask", "contrast_mask", "image_ids")
    files = [p for folder in (ROOT / "shim", PACKAGE) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix in (".py", ".h", ".cpp") and p.name != "reference.py"
             and all(name in p.read_text() for name in names)]
    assert files, "no file names the loss op's arguments: the search is broken"
    assert len(files) <= 4, [str(p.relative_to(ROOT)) for p in files]


def test_no_public_header_declares_a_reference_function():
    declared = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in sorted((ROOT / "ops" / "include").rglob("*.h"))
                for m in re.finditer(r"\w*reference\w*\s*\(", p.read_text())]
    assert not declared, declared
