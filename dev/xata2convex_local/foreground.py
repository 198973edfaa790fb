"""The foreground serving shared by `xata2convex local xata|convex|trigger`: print, serve, stop cleanly."""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType

import click


def catch_stop_signals() -> threading.Event:
    """An event that SIGINT and SIGTERM set instead of killing the process.

    Install it before the server starts, so that a stop during a slow start (the Node process of the
    local Convex) still leaves through the `with` block that ends the server.
    """
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return stopped


def serve_until_stopped(
    stopped: threading.Event, settings: Mapping[str, str], alive: Callable[[], bool] = lambda: True
) -> bool:
    """Print `NAME=value` per setting, then block until `stopped` is set; False if `alive()` turned false.

    Values are quoted for the shell where needed (a deploy key holds a `|`), so the lines can be
    pasted after `export` or read with `eval`."""
    for name, value in settings.items():
        click.echo(f"{name}={shlex.quote(value)}")
    click.get_text_stream("stdout").flush()
    while not stopped.wait(0.5):
        if not alive():
            return False
    return True
