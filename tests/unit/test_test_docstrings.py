"""Every test says what behaviour it pins, in its docstring.

A test's name is too short to say what would be wrong if it failed; the
docstring is where a reader (or a reviewer of a change that breaks it) finds
the behaviour it protects.  This walks the test files with ``ast`` rather
than importing them, so it is cheap and also covers the integration tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def _test_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """What pytest collects: ``test*`` functions at module level and in ``Test*`` classes."""
    found: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test"):
            found.append(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found.extend(n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                         and n.name.startswith("test"))
    return found


def test_every_test_function_has_a_docstring() -> None:
    """Each test function under tests/ (unit and integration) has a non-empty
    docstring; the list of those without one is empty, and the walk found the
    suite's test files at all."""
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 50
    missing = []
    for path in files:
        for fn in _test_functions(ast.parse(path.read_text(), str(path))):
            if not (ast.get_docstring(fn) or "").strip():
                missing.append(f"{path.relative_to(TESTS)}:{fn.lineno} {fn.name}")
    assert missing == [], "tests without a docstring saying what they pin"


def test_the_walk_sees_a_missing_docstring() -> None:
    """The check can fail: a test function without a docstring, at module
    level or in a Test class, is found; one with a docstring is not."""
    tree = ast.parse(
        "def test_a():\n    pass\n"
        "def test_b():\n    '''Pins b.'''\n"
        "class TestC:\n    def test_c(self):\n        pass\n"
        "def helper():\n    pass\n")
    undocumented = [f.name for f in _test_functions(tree) if not ast.get_docstring(f)]
    assert undocumented == ["test_a", "test_c"]
