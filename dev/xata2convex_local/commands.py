"""The `xata2convex local …` subcommands: the CLI adds these when this package is installed."""

from __future__ import annotations

import click

from .convex_server import convex_command
from .trigger_server import local_trigger_command
from .xata_server import xata_command

COMMANDS: dict[str, click.Command] = {
    "xata": xata_command,
    "convex": convex_command,
    "trigger": local_trigger_command,
}
