"""docs/cli.md is the CLI's own --help output, so the reference never drifts from the code.

Regenerate after changing a command: `UPDATE_CLI_DOCS=1 .venv/bin/pytest tests/test_cli_docs.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
from click.testing import CliRunner

from xata2convex.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def commands(group: click.Group, prefix: list[str]) -> list[list[str]]:
    found = [prefix]
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            found += commands(command, [*prefix, name])
        else:
            found.append([*prefix, name])
    return found


def render() -> str:
    parts = ["# xata2convex command line\n\nGenerated from `--help`; `tests/test_cli_docs.py` checks it.\n"]
    for path in commands(main, []):
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=100, prog_name="xata2convex")
        assert result.exit_code == 0, result.output
        parts.append(f"\n## {' '.join(['xata2convex', *path])}\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


def test_cli_reference_matches_help() -> None:
    text = render()
    if os.environ.get("UPDATE_CLI_DOCS"):
        DOCS.write_text(text)
    assert DOCS.read_text() == text, "docs/cli.md is stale: rerun with UPDATE_CLI_DOCS=1"


def test_the_docs_are_self_contained() -> None:
    """README.md and docs/*.md cite nothing outside the repository: every relative link resolves
    inside it, and no document points at design notes that only the authors have."""
    root = DOCS.parents[1]
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "DESIGN" not in text, f"{doc.name} cites DESIGN.md, which is not in the repository"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(root) and path.exists(), f"{doc.name} links to {target}"
