"""The house's layers, as import-linter checks them (pyproject's [tool.importlinter], also run by
`make lint`): the receiver only serves, the contract stands alone, the pipeline reads the
receiver only through receiver.contract, and nothing below imports the front door.

The second test breaks each rule in a copy of the code and checks that import-linter says so:
a contract that nothing could break would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("receiver", "pipeline", "clickledger")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the packages in `root`, with the project's contracts (no cache: a copy's
    graph must not be taken for the checkout's)."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1"})


def test_the_import_contracts_hold() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "bad_import", "contract"), [
    ("receiver/app.py", "import pipeline.runner", "The receiver only serves"),
    ("receiver/log.py", "import clickledger.demo", "The receiver only serves"),
    ("receiver/contract/framing.py", "import receiver.log", "The contract stands alone"),
    ("pipeline/staging.py", "import receiver.app", "The pipeline reads the receiver only through receiver.contract"),
    ("pipeline/runner.py", "import clickledger.cli", "The pipeline never imports the front door"),
])
def test_each_contract_catches_an_import_that_breaks_it(tmp_path: Path, module: str, bad_import: str,
                                                        contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    # a function-level import, the kind a lazy import in a command would be
    target.write_text(target.read_text(encoding="utf-8") + f"\n\ndef _breaks_the_layers():\n    {bad_import}\n",
                      encoding="utf-8")
    done = lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout[-2000:]
    assert f"{contract}" in done.stdout and "BROKEN" in done.stdout, done.stdout[-3000:]
