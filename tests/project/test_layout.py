"""The test tree's own layout: a folder (a package) per part, conftest files that hold only
fixtures, helpers imported by name from tests/support, and no second copy of the demo's
receiver start and stop (tests/__init__.py says what goes where)."""

from __future__ import annotations

import ast
from pathlib import Path

import clickledger.demo
from tests.support.paths import REPO

TESTS = REPO / "tests"
PARTS = {"receiver", "contract", "pipeline", "reliability", "notebooks", "cli", "project"}


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def is_fixture(node: ast.FunctionDef) -> bool:
    """Decorated with pytest.fixture or pytest.fixture(...)."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def misplaced_test_modules(root: Path) -> list[str]:
    """Test modules outside a part's folder, and folders with tests but no __init__.py."""
    found = []
    for path in sorted(root.rglob("test_*.py")):
        folder = path.parent.relative_to(root)
        if len(folder.parts) != 1 or folder.parts[0] not in PARTS:
            found.append(f"{path.relative_to(root)}: not in one of {sorted(PARTS)}")
        elif not (path.parent / "__init__.py").is_file():
            found.append(f"{folder}/ has no __init__.py")
    return sorted(set(found))


def conftest_non_fixtures(root: Path) -> list[str]:
    """What a conftest.py defines besides fixtures and pytest hooks (helpers go to tests/support)."""
    found = []
    for path in sorted(root.rglob("conftest.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            where = f"{path.relative_to(root)}:{node.lineno}"
            if isinstance(node, ast.ClassDef):
                found.append(f"{where} class {node.name}")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not is_fixture(node) and not node.name.startswith("pytest_"):
                    found.append(f"{where} def {node.name}")
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                found.append(f"{where} {ast.unparse(node)[:60]}")
    return found


def imports_of_tests(root: Path) -> list[str]:
    """Imports of a conftest or of another test module: shared code lives in tests/support."""
    found = []
    for path in python_files(root):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                last = name.rsplit(".", 1)[-1]
                if last == "conftest" or last.startswith("test_"):
                    found.append(f"{path.relative_to(root)}:{node.lineno} imports {name}")
    return found


def copies_of_demo_functions(root: Path) -> list[str]:
    """Functions of the tests named as clickledger.demo's public functions: the tests use the
    demo's own (free_port, start_receiver, wait_healthy, stop_receiver...), not copies."""
    demo = {name for name, value in vars(clickledger.demo).items() if callable(value)
            and not name.startswith("_") and getattr(value, "__module__", "") == "clickledger.demo"}
    found = []
    for path in python_files(root):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in demo:
                found.append(f"{path.relative_to(root)}:{node.lineno} def {node.name}")
    return found


def test_every_test_module_is_in_a_part_folder_that_is_a_package() -> None:
    assert misplaced_test_modules(TESTS) == []
    assert (TESTS / "__init__.py").is_file() and (TESTS / "support" / "__init__.py").is_file()


def test_conftest_files_hold_only_fixtures() -> None:
    assert conftest_non_fixtures(TESTS) == []


def test_no_module_imports_a_conftest_or_another_test_module() -> None:
    assert imports_of_tests(TESTS) == []


def test_no_copy_of_the_demos_receiver_start_and_stop() -> None:
    assert copies_of_demo_functions(TESTS) == []
