"""The README a newcomer reads first: short, its links alive, its walkthrough runnable, and
its example outputs what the commands print today.

The walkthrough test runs the README's own shell blocks with bash (on a free port and in a
temporary directory instead of 8080 and /tmp/walkthrough) and checks that each output block
the README shows is what they printed, ids and paths aside.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clickledger.cli import build_parser
from clickledger.demo import free_port
from tests.support.paths import REPO

README = REPO / "README.md"
MAX_README_LINES = 250
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section of a markdown text."""
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return [(m[1], m[2]) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; the reference belongs in docs/"


def test_readme_starts_with_the_two_commands() -> None:
    quick = section(README.read_text(encoding="utf-8"), "Quick start")
    assert fenced_blocks(quick)[0] == ("sh", "make demo\nmake test\n")


@pytest.mark.parametrize("page", ["README.md", "data/README.md", *sorted(
    str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_resolve(page: str) -> None:
    path = REPO / page
    dead = [target for target in LINK.findall(path.read_text(encoding="utf-8"))
            if "://" not in target and not target.startswith("mailto:")
            and not (path.parent / target).exists()]
    assert not dead, f"{page} links to files that do not exist: {dead}"


def test_readme_commands_exist() -> None:
    table = section(README.read_text(encoding="utf-8"), "Commands")
    named = set(re.findall(r"^\| `(\w+)", table, re.M))
    named |= {name for cell in re.findall(r"^\| `(\w+)`, `(\w+)`", table, re.M) for name in cell}
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert named, "the README's Commands table lists no command"
    assert named <= commands, f"README names commands the CLI does not have: {named - commands}"
    assert commands <= named, f"commands missing from the README: {commands - named}"


def normalise(text: str, data_dir: Path, port: int) -> str:
    text = text.replace(str(data_dir), "/tmp/walkthrough").replace(f":{port}", ":8080")
    text = UUID.sub("<uuid>", text)
    # the health probes of the wait loop are logged too: their number depends on timing
    return re.sub(r"clickledger run: \d+ events", "clickledger run: N events", text)


@pytest.mark.server
@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's walkthrough uses curl (.ci/run installs it)")
def test_readme_walkthrough_runs_as_shown(tmp_path: Path) -> None:
    walkthrough = section(README.read_text(encoding="utf-8"), "Walkthrough")
    blocks = fenced_blocks(walkthrough)
    script = "\n".join(body for lang, body in blocks if lang == "sh")
    shown = [body for lang, body in blocks if lang == ""]
    assert script and shown, "the walkthrough has no shell block or no output block"
    data_dir, port = tmp_path / "walkthrough", free_port()
    bin_dir = Path(sys.executable).parent
    script = (script.replace("/tmp/walkthrough", str(data_dir)).replace("8080", str(port))
              .replace(".venv/bin/", f"{bin_dir}/"))
    # the receiver's own start-up lines would interleave with the outputs compared below
    script = re.sub(r"^(.*clickledger serve .*?)\s*&$", r"\1 >/dev/null 2>&1 &", script, flags=re.M)
    assert "/dev/null 2>&1 &" in script, "the walkthrough no longer starts the receiver in the background"
    done = subprocess.run(["bash", "-ec", f"trap 'kill %1 2>/dev/null || true' EXIT\n{script}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    printed = normalise(done.stdout, data_dir, port)
    for block in shown:
        expected = normalise(block, Path("/tmp/walkthrough"), 8080)
        assert expected in printed, f"the README shows\n{expected}\nbut the commands printed\n{printed}"
