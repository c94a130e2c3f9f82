"""The README and docs/ point only at what the repository holds, and the README's quick start is two commands."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
REPO_PATH = re.compile(
    r"`((?:docs|compose|bench|tests|tracing|otel_bridge|collector|lakehouse|flight|admin)/[\w./-]*)`"
)


def test_docs_exist() -> None:
    names = {page.name for page in PAGES}
    assert {"architecture.md", "configuration.md", "query-cookbook.md", "operations.md"} <= names


def test_relative_links_and_cited_paths_exist() -> None:
    for page in PAGES:
        text = page.read_text()
        for target in LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name}: link to missing {target}"
        for cited in REPO_PATH.findall(text):
            path = cited.rstrip(".")
            if "<" in path or "*" in path:
                continue
            assert (REPO / path).exists(), f"{page.name}: cites missing {path}"


def test_no_team_notes_cited() -> None:
    for page in [*PAGES, REPO / "compose" / "README.md"]:
        text = page.read_text()
        assert "DESIGN.md" not in text, page.name
        assert "shared/" not in text, page.name
        assert "reference/" not in text, page.name


def test_quick_start_is_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, commands
    assert "sirius demo" in commands[0]
    assert "-c constraints.txt" in commands[0]
    assert commands[1] == ".venv/bin/python -m pytest -q"
    # .ci/run runs the same install (minus the demo) and exactly the same test command.
    ci = (REPO / ".ci" / "run").read_text()
    install = commands[0].split(" && .venv/bin/sirius demo", 1)[0]
    for part in install.split(" && "):
        assert part.replace("-q ", "") in ci.replace("-q ", ""), part
    assert ci.rstrip().splitlines()[-1] == commands[1]
