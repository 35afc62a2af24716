"""Running a marimo notebook in-process, as `python notebooks/NAME.py -- ARGV` runs it: for the
notebooks' tests and for the troubleshooting advice, which reads the troubleshooting notebook."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.paths import REPO


@contextlib.contextmanager
def notebook_env(data: Path, argv: list[str]) -> Iterator[None]:
    """CLICKLEDGER_DATA and the command line a notebook's mo.cli_args() reads in script mode."""
    old_env, old_argv = os.environ.get("CLICKLEDGER_DATA"), sys.argv
    os.environ["CLICKLEDGER_DATA"] = str(data)
    sys.argv = [sys.argv[0], "--", *argv]
    try:
        yield
    finally:
        sys.argv = old_argv
        if old_env is None:
            os.environ.pop("CLICKLEDGER_DATA", None)
        else:
            os.environ["CLICKLEDGER_DATA"] = old_env


def load_notebook(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"notebook_{name}", REPO / "notebooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run_notebook(name: str, data: Path, *argv: str, defs: dict[str, Any] | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """Run a notebook in-process as `python notebooks/NAME.py -- ARGV` does, with UI defaults.

    Returns the text of its outputs (HTML, unescaped enough to search) and its definitions.
    """
    module = load_notebook(name)
    with notebook_env(data, list(argv)):
        outputs, found = module.app.run(defs=defs)
    return "\n".join(getattr(o, "text", "") or "" for o in outputs if o is not None), dict(found)
