"""docs/cli.md is the CLI's own --help output, so the reference never drifts from the code.

Regenerate after changing a command: `UPDATE_CLI_DOCS=1 .venv/bin/pytest tests/test_cli_docs.py`.
"""

from __future__ import annotations

import os
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
