"""docs/ARCHITECTURE.md is true: every library module has a row, and its imports column is what
the module imports from the pack (late imports marked as such)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| `magi1/(\w+)\.py` \| .* \| (.*) \|$")


def documented() -> dict[str, tuple[set[str], set[str]]]:
    """module -> (imports at load time, late imports) as the table states them."""
    rows = {}
    for line in (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if not match:
            continue
        eager, late = set(), set()
        for name in (n.strip() for n in match.group(2).split(",")):
            if name in ("—", ""):
                continue
            (late if name.endswith("(late)") else eager).add(name.removesuffix("(late)").strip())
        rows[match.group(1)] = (eager, late)
    return rows


def actual(path: Path) -> tuple[set[str], set[str]]:
    """(pack modules imported at module level, pack modules imported inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    eager, late = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            names = [n for n in names if (REPO / "magi1" / f"{n}.py").exists()]
            (eager if id(node) in top else late).update(names)
    return eager, late - eager


def test_every_library_module_has_a_row():
    modules = {p.stem for p in (REPO / "magi1").glob("*.py") if p.stem != "__init__"}
    assert modules == set(documented())


def test_each_rows_imports_are_the_modules_imports():
    for module, stated in documented().items():
        assert actual(REPO / "magi1" / f"{module}.py") == stated, module
