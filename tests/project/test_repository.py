"""The repository as a new user meets it: what `make demo` installs, what git ignores, and
the data directory's README and examples."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.fx import read_fx_rates
from pipeline.reconciliation import read_statement
from tests.support.paths import REPO

DEV_ONLY = ("playwright", "schemathesis", "pytest", "hypothesis", "nbconvert", "ipykernel", "ruff")


def make_dry_run(target: str, tmp_path: Path) -> str:
    """The commands `make TARGET` would run on a machine without .venv (nothing is run)."""
    done = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'fresh-venv'}"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_only_what_it_runs(tmp_path: Path) -> None:
    commands = make_dry_run("demo", tmp_path)
    installs = [line for line in commands.splitlines() if "pip install" in line]
    assert installs and all("[dev]" not in line for line in installs), commands
    assert "clickledger demo" in commands


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["test", "lint"])
def test_make_test_installs_the_dev_extras(target: str, tmp_path: Path) -> None:
    commands = make_dry_run(target, tmp_path)
    assert "-e '.[dev]'" in commands, commands


def test_runtime_dependencies_hold_no_test_tool() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"]).lower()
    assert not [name for name in DEV_ONLY if name in runtime]
    dev = " ".join(project["optional-dependencies"]["dev"]).lower()
    assert all(name in dev for name in DEV_ONLY)


def test_every_package_is_installed() -> None:
    """pyproject lists its packages one by one: a new sub-package left out of the list would be
    missing from an installed clickledger (an editable install would not show it)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts)
             for top in ("receiver", "pipeline", "clickledger") for init in (REPO / top).rglob("__init__.py")}
    assert found <= listed, f"packages missing from [tool.setuptools] packages: {sorted(found - listed)}"


def test_every_data_file_of_a_package_is_installed() -> None:
    """A package's files other than Python (the platform presets) ship only when
    [tool.setuptools.package-data] names them: an editable install would hide their absence."""
    import fnmatch
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"].get(
        "package-data", {})
    data_files = [path for top in ("receiver", "pipeline", "clickledger") for path in (REPO / top).rglob("*")
                  if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts]
    assert any(path.parent.name == "presets" for path in data_files)
    for path in data_files:
        package = ".".join(path.parent.relative_to(REPO).parts)
        patterns = declared.get(package, [])
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns), \
            f"{path.relative_to(REPO)} is not in [tool.setuptools.package-data] {package!r}"


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize(("path", "ignored"), [
    ("notebooks/__marimo__/session/overview.py.json", True),
    ("data/demo/log/segment-00000001.ndjson", True),
    ("data/config.toml", True),
    ("data/log/segment-00000001.ndjson", True),
    ("data/warehouse/conversions.parquet", True),
    ("data/ledger/wallet_credits.ndjson", True),
    ("data/bench/last-run.md", True),
    ("data/README.md", False),
    ("data/examples/fx_rates.csv", False),
    ("data/examples/statement-acme.csv", False),
])
def test_generated_files_are_ignored(path: str, ignored: bool) -> None:
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, timeout=30)
    assert (done.returncode == 0) is ignored, f"{path} should {'' if ignored else 'not '}be ignored by git"


def test_data_readme_names_every_part_of_the_layout() -> None:
    text = (REPO / "data" / "README.md").read_text(encoding="utf-8")
    for part in ("config.toml", "fx_rates.csv", "log/", "index/", "warehouse/", "ledger/"):
        assert part in text, f"data/README.md does not describe {part}"


def test_example_fx_rates_are_valid() -> None:
    rates = read_fx_rates(REPO / "data" / "examples" / "fx_rates.csv")
    assert rates.height > 0
    assert set(rates["currency"]) >= {"USD", "EUR", "GBP"}


def test_example_statement_reads_without_a_column_mapping() -> None:
    statement = read_statement(REPO / "data" / "examples" / "statement-acme.csv")
    assert statement.height == 5
    assert statement["transaction_id"].str.starts_with("order-").all()
    assert statement["amount"].null_count() == 0 and statement["date"].null_count() == 0
    assert "BRL" in statement["currency"].to_list()  # a currency without a rate in the example fx file
