"""Imports point downward only (CONVENTIONS "Import direction", G3, G10): checked over dist_tool/ with ast."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dist_tool"
UPPER = ("launch.py", "cli.py", "session.py", "render.py", "__main__.py", "commands/", "store/", "shim/")


def imports(path: Path, module_level_only: bool) -> list[tuple[int, str]]:
    """(line, dotted name) per import; ``from a import b`` gives ``a.b``. Module level skips
    function bodies and ``if TYPE_CHECKING:`` blocks, which never run at import."""
    package = list(path.relative_to(PKG.parent).parts[:-1])  # what a relative import is relative to
    found, todo = [], list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if module_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if module_level_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[: len(package) + 1 - node.level], *filter(None, [node.module])]
                            ) if node.level else node.module
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        todo += ast.iter_child_nodes(node)
    return found


def files(*under: str) -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p.relative_to(PKG).as_posix().startswith(under))


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


DOMAIN = [p for p in files("") if not p.relative_to(PKG).as_posix().startswith(UPPER)]
# (id, files, module level only, allowed(name) -> bool); an empty file list means the layer is absent.
RULES = [
    ("store-stays-below", files("store/"), False,
     lambda n: not within(n, "dist_tool.commands", "dist_tool.render", "dist_tool.cli", "typer", "rich")),
    ("domain-below-cli", DOMAIN, False,
     lambda n: not within(n, "dist_tool.commands", "dist_tool.cli", "dist_tool.session", "typer")),
    # The domain reaches the stores through the Session and their Protocols, never an implementation.
    ("domain-uses-store-interfaces", DOMAIN, False,
     lambda n: not within(n, "dist_tool.store") or within(n, "dist_tool.store.api", "dist_tool.store.limits",
                                                           "dist_tool.store.records")),
    ("only-render-imports-rich", [p for p in files("") if p != PKG / "render.py"], False,
     lambda n: not within(n, "rich")),
    ("errors-import-nothing", files("errors.py"), False, lambda n: not within(n, "dist_tool")),
    ("commands-lazy", files("commands/"), True,
     lambda n: within(n, "typer", "typing", "__future__", "dist_tool.errors", "dist_tool.commands")),
    ("shim-stdlib-only", files("shim/"), True,
     lambda n: n.split(".")[0] in sys.stdlib_module_names
     or within(n, "dist_tool.proc", "dist_tool.errors", "dist_tool.shim")),
]
# Known violations, reported to the lead: {rule id: reason naming the file}; strict, so a fix shows up.
KNOWN: dict[str, str] = {}


@pytest.mark.parametrize(("rule", "paths", "module_level", "allowed"), [
    pytest.param(*r, id=r[0], marks=[pytest.mark.xfail(strict=True, reason=KNOWN[r[0]])] if r[0] in KNOWN else [])
    for r in RULES])
def test_import_rule(rule, paths, module_level, allowed) -> None:
    if not paths:
        pytest.skip(f"{rule}: no such files under dist_tool/ yet")
    bad = [f"{p.relative_to(PKG.parent)}:{line}: {name}"
           for p in paths for line, name in imports(p, module_level) if not allowed(name)]
    assert not bad, f"{rule} broken by:\n" + "\n".join(sorted(bad))
