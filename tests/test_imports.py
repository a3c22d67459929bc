"""No import circles in the package: every arrow between its modules points down.

Imports anywhere count, module level or inside a function (a lazy import that
only dodges a circle is still one); those under ``if TYPE_CHECKING:`` do not,
as they never run. ``import a.b`` and ``from a import b`` reach ``a.b``'s
package ``a`` too, since Python runs ``a/__init__.py`` first, unless ``a`` holds
the importing module: a package's ``__init__`` may gather its own modules.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "distillpipe"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, at any depth of its code."""
    found: set[str] = set()
    own = name.split(".")
    ancestors = {".".join(own[:end]) for end in range(1, len(own))}

    def add(target: str) -> None:
        parts = target.split(".")
        for end in range(1, len(parts) + 1):  # each package on the way runs first
            module = ".".join(parts[:end])
            if module in modules and (module not in ancestors or end == len(parts)):
                found.add(module)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            add(base)
            for alias in node.names:
                add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found - {name} - ancestors


def import_graph(root: Path) -> dict[str, set[str]]:
    files = {module_name(path, root): path for path in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = imported(tree, name, path.name == "__init__.py", set(files))
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def assert_no_circle(root: Path) -> None:
    found = circles(import_graph(root))
    assert not found, "import circles (move the shared piece down): " + "; ".join(
        " <-> ".join(circle) for circle in found
    )


def test_the_package_has_no_import_circle():
    assert_no_circle(PACKAGE)


def test_a_circle_planted_in_a_scratch_copy_of_the_package_fails_it(tmp_path: Path):
    copy = tmp_path / "distillpipe"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert_no_circle(copy)
    with (copy / "errors.py").open("a") as errors:  # the lowest module reaching up, lazily
        errors.write("\n\ndef later():\n    from distillpipe.teachers.batch import run_batches\n")
    with pytest.raises(AssertionError, match=r"import circles.*distillpipe\.errors"):
        assert_no_circle(copy)
    [circle] = circles(import_graph(copy))
    assert {"distillpipe.errors", "distillpipe.teachers.batch"} <= set(circle)


@pytest.fixture
def scratch_package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "low.py").write_text("X = 1\n")
    (root / "sub" / "__init__.py").write_text("from pkg.low import X\n")
    (root / "sub" / "high.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import helper\n"
        "if TYPE_CHECKING:\n    from pkg.top import Y\n"
    )
    (root / "sub" / "helper.py").write_text("from ..low import X\n")
    (root / "top.py").write_text("from pkg.sub.high import helper\nY = 2\n")
    return root


def test_a_package_whose_arrows_point_down_has_none(scratch_package: Path):
    graph = import_graph(scratch_package)
    assert graph["pkg.sub.high"] == {"pkg.sub.helper"}
    assert graph["pkg.sub.helper"] == {"pkg.low"}
    assert circles(graph) == []


def test_a_planted_circle_is_found(scratch_package: Path):
    (scratch_package / "low.py").write_text("X = 1\n\ndef later():\n    from pkg import top\n")
    assert circles(import_graph(scratch_package)) == [
        ["pkg.low", "pkg.sub", "pkg.sub.helper", "pkg.sub.high", "pkg.top"]
    ]
