"""The `xata2convex local …` subcommands: the CLI adds these when this package is installed."""

from __future__ import annotations

import click

from .aws_server import aws_command
from .convex_server import convex_command
from .invoke import invoke_command, sign_command
from .trigger_server import local_trigger_command
from .xata_server import xata_command

COMMANDS: dict[str, click.Command] = {
    "xata": xata_command,
    "convex": convex_command,
    "trigger": local_trigger_command,
    "aws": aws_command,
    "invoke": invoke_command,
    "sign": sign_command,
}
