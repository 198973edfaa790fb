"""The local Convex stand-in: a Node process serving a project's `convex/` folder over Convex's HTTP API.

The server itself is `local/convex-server.ts` (run with tsx): the project's functions run in the official
convex-test backend with schema validation, Convex's transaction limits and the crons component. This
module starts and stops it, and reads its request log (`GET /_local/log`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import click

from xata2convex.mirror_config import MirrorConfig
from xata2convex.model import DatabaseSchema, XataToConvexError
from xata2convex.schemagen import write_convex_module

from .foreground import catch_stop_signals, serve_until_stopped

log = logging.getLogger(__name__)

# This file is dev/xata2convex_local/convex_server.py in the repository.
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = Path("local") / "convex-server.ts"
TSX_LOADER = Path("node_modules") / "tsx" / "dist" / "loader.mjs"
READY_LINE = "local convex ready"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DEFAULT_PORT = 3290  # `local convex`'s port: off 3210/3211, which `npx convex dev --local` uses


class LocalConvexError(XataToConvexError):
    """The local Convex could not be started or did not answer."""


def _first_existing(relative: Path, *roots: Path) -> Path:
    for root in roots:
        if (root / relative).is_file():
            return root / relative
    searched = ", ".join(str(root) for root in roots)
    raise LocalConvexError(f"{relative} not found under {searched}; run `make setup` (npm ci) first")


class LocalConvex:
    """A local Convex deployment for `project_dir/convex` (default: the current directory's).

    `port=0` picks a free port (for the API and the site). The deploy key is `local:` plus random
    characters and the sink secret random hex, unless given (neither is taken from the environment).
    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        project_dir: Path | None = None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        deploy_key: str | None = None,
        sink_secret: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.project_dir = (project_dir or Path.cwd()).resolve()
        self.port = port
        self.host = host
        self._deploy_key = deploy_key or f"local:xata2convex|{secrets.token_hex(24)}"
        self._sink_secret = sink_secret or secrets.token_hex(32)
        self._site_url: str | None = None
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._url: str | None = None
        self._stderr: deque[str] = deque(maxlen=50)

    def __repr__(self) -> str:  # never shows the deploy key
        return f"LocalConvex(project_dir={str(self.project_dir)!r}, url={self._url!r})"

    @property
    def url(self) -> str:
        if self._url is None:
            raise LocalConvexError("local Convex is not running")
        return self._url

    @property
    def site_url(self) -> str:
        """Where the HTTP actions are served (CONVEX_SITE_URL)."""
        if self._site_url is None:
            raise LocalConvexError("local Convex is not running")
        return self._site_url

    @property
    def deploy_key(self) -> str:
        return self._deploy_key

    @property
    def sink_secret(self) -> str:
        return self._sink_secret

    def settings(self) -> dict[str, str]:
        """The environment the CLI needs to talk to this deployment with the deploy key."""
        return {"CONVEX_URL": self.url, "CONVEX_DEPLOY_KEY": self.deploy_key}

    def sink_settings(self) -> dict[str, str]:
        """The environment the Lambdas use instead: the signed sink HTTP action, no deploy key."""
        return {"CONVEX_SITE_URL": self.site_url, "XATA2CONVEX_SINK_SECRET": self.sink_secret}

    def _command(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise LocalConvexError("`node` is not on PATH; the local Convex needs Node.js 20 or later")
        script = _first_existing(SERVER_SCRIPT, self.project_dir, REPO_ROOT)
        loader = _first_existing(TSX_LOADER, self.project_dir, REPO_ROOT)
        return [
            node,
            "--import",
            loader.as_uri(),
            str(script),
            "--port",
            str(self.port),
            "--host",
            self.host,
            "--dir",
            str(self.project_dir),
        ]

    def start(self) -> LocalConvex:
        if self._process is not None:
            return self
        if not (self.project_dir / "convex").is_dir():
            raise LocalConvexError(f"no convex/ folder in {self.project_dir}")
        env = {
            **os.environ,
            "CONVEX_DEPLOY_KEY": self._deploy_key,
            "XATA2CONVEX_SINK_SECRET": self._sink_secret,
        }
        process = subprocess.Popen(
            self._command(),
            cwd=self.project_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._process = process
        lines: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None and process.stderr is not None
        _pump(process.stdout, lines.put, on_close=lambda: lines.put(None))
        _pump(process.stderr, self._on_stderr)
        try:
            self._url, self._site_url = self._wait_ready(lines)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, lines: queue.Queue[str | None]) -> tuple[str, str]:
        url: str | None = None
        site_url: str | None = None
        while True:
            try:
                line = lines.get(timeout=self.startup_timeout)
            except queue.Empty:
                raise LocalConvexError(
                    f"local Convex did not start within {self.startup_timeout:.0f} s{self._stderr_tail()}"
                ) from None
            if line is None:
                raise LocalConvexError(f"local Convex exited before it was ready{self._stderr_tail()}")
            line = line.strip()
            if line.startswith("CONVEX_URL="):
                url = line.removeprefix("CONVEX_URL=")
            elif line.startswith("CONVEX_SITE_URL="):
                site_url = line.removeprefix("CONVEX_SITE_URL=")
            elif line == READY_LINE and url is not None and site_url is not None:
                return url, site_url

    def _on_stderr(self, line: str) -> None:
        self._stderr.append(line)
        if line.strip():
            log.warning("local convex: %s", line.rstrip())

    def _stderr_tail(self) -> str:
        tail = "\n".join(line.rstrip() for line in self._stderr if line.strip())
        return f":\n{tail}" if tail else ""

    def stop(self) -> None:
        """End the Node process (its scheduled-function timers would keep it alive forever)."""
        process, self._process, self._url, self._site_url = self._process, None, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def request_log(self) -> list[dict[str, Any]]:
        """Every function call so far: path, kind, admin, status, and for mirror writes table and counts."""
        with urllib.request.urlopen(f"{self.url}/_local/log", timeout=10) as response:
            entries: list[dict[str, Any]] = json.load(response)
        return entries

    def reset_log(self) -> None:
        request = urllib.request.Request(f"{self.url}/_local/log", method="DELETE")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> LocalConvex:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _pump(stream: IO[str], sink: Callable[[str], None], on_close: Callable[[], None] | None = None) -> None:
    """Forward a child's output line by line on a thread, so that its pipe never fills."""

    def run() -> None:
        try:
            for line in stream:
                sink(line)
        except ValueError:  # stop() closed the stream
            pass
        if on_close is not None:
            on_close()

    threading.Thread(target=run, daemon=True).start()


@click.command("convex")
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True,
    help="Port to listen on (0: any free port); not 3210, which `npx convex dev --local` takes.",
)  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--deploy-key",
    help="The deploy key this local deployment accepts (default: a random `local:` key). "
    "Never read from $CONVEX_DEPLOY_KEY, which may hold a real deployment's key: it is printed.",
)
def convex_command(port: int, host: str, deploy_key: str | None) -> None:
    """Serve ./convex as a local Convex deployment in the foreground; print the settings to use."""
    convex = LocalConvex(Path.cwd(), port=port, host=host, deploy_key=deploy_key)
    stopped = catch_stop_signals()
    try:
        convex.start()
    except LocalConvexError as exc:
        raise click.ClickException(str(exc)) from exc
    with convex:
        settings = {**convex.settings(), **convex.sink_settings()}
        if not serve_until_stopped(stopped, settings, alive=convex.is_running):
            raise click.ClickException("local Convex exited")


@contextmanager
def project_for_schema(
    schema: DatabaseSchema, base: Path = REPO_ROOT, config: MirrorConfig | None = None
) -> Iterator[Path]:
    """A throwaway Convex project: `base`'s convex/ with the mirror regenerated for `schema` (and `config`).

    Made beside `base` (not in /tmp) so that Node resolves `convex` from base's node_modules.
    """
    project = Path(tempfile.mkdtemp(prefix=".convex-project-", dir=base))
    try:
        shutil.copytree(base / "convex", project / "convex")
        write_convex_module(schema, project / "convex" / "xataTables.ts", config)
        yield project
    finally:
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    convex_command()
