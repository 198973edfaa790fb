"""What a user sees while a long export or sync works: per-table counts and rates.

Not the run's record (that is state/progress.json): this only shows the work going on. The stages
take a `ProgressDisplay` and meter each table's work with it; who runs them picks how it is shown: a
live line on a terminal (the CLI), log lines (Lambda, where Powertools formats them), or nothing
(`--json`, a pipe).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("xata2convex.progress")

# Per stage: what is counted, what it comes in, and the verb of its closing line.
UNITS = {"export": ("rows", "pages", "exported"), "sync": ("documents", "batches", "synced")}


@dataclass
class Meter:
    """One table's work in one stage: rows and pages (export), or documents and batches (sync)."""

    table: str
    stage: str
    sink: ProgressDisplay
    count: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)

    def pages(self, pages: Iterable[list[T]]) -> Iterator[list[T]]:
        """Pass pages through, counting their items and the pages."""
        for page in pages:
            self.count += len(page)
            self.steps += 1
            self.sink.update(self)
            yield page

    def items(self, items: Iterable[T], steps: Callable[[], int]) -> Iterator[T]:
        """Pass items through, counting them; `steps()` says how many batches have gone so far."""
        for item in items:
            self.count += 1
            self.steps = steps()
            self.sink.update(self)
            yield item

    def done(self, count: int | None = None, steps: int | None = None) -> None:
        self.count = self.count if count is None else count
        self.steps = self.steps if steps is None else steps
        self.sink.finish(self)

    def describe(self) -> str:
        unit, step_unit, _ = UNITS[self.stage]
        seconds = max(time.monotonic() - self.started, 1e-6)
        steps = f"{self.steps:,} {step_unit}, " if self.steps else ""  # a COPY comes in no pages
        return f"{self.count:,} {unit}, {steps}{seconds:.1f} s ({self.count / seconds:,.0f} {unit}/s)"


class ProgressDisplay(Protocol):
    def track(self, table: str, stage: str) -> Meter: ...

    def update(self, meter: Meter) -> None: ...

    def finish(self, meter: Meter) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """Shows nothing: --json, output to a pipe, tests."""

    def track(self, table: str, stage: str) -> Meter:
        return Meter(table, stage, self)

    def update(self, meter: Meter) -> None:
        pass

    def finish(self, meter: Meter) -> None:
        pass

    def close(self) -> None:
        pass


class LogProgress(NoProgress):
    """One log line per table when it is done, and one every `every_s` while it runs (Lambda)."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self._last: dict[int, float] = {}

    def update(self, meter: Meter) -> None:
        now = time.monotonic()
        if now - self._last.setdefault(id(meter), meter.started) >= self.every_s:
            self._last[id(meter)] = now
            log.info("%s %s: %s so far", meter.stage, meter.table, meter.describe(), extra=_fields(meter))

    def finish(self, meter: Meter) -> None:
        self._last.pop(id(meter), None)
        log.info("%s %s: %s", UNITS[meter.stage][2], meter.table, meter.describe(), extra=_fields(meter))


def _fields(meter: Meter) -> dict[str, object]:
    unit, step_unit, _ = UNITS[meter.stage]
    return {"table": meter.table, "stage": meter.stage, unit: meter.count, step_unit: meter.steps}


class TerminalProgress(NoProgress):
    """A live line on a terminal (stderr) with the tables in progress; a line per finished table."""

    def __init__(self, stream: IO[str], every_s: float = 0.2) -> None:
        self.stream = stream
        self.every_s = every_s
        self.lock = threading.Lock()
        self.running: list[Meter] = []
        self._drawn = 0.0

    def track(self, table: str, stage: str) -> Meter:
        meter = Meter(table, stage, self)
        with self.lock:
            self.running.append(meter)
        return meter

    def update(self, meter: Meter) -> None:
        now = time.monotonic()
        if now - self._drawn < self.every_s:
            return
        with self.lock:
            self._drawn = now
            self._draw()

    def finish(self, meter: Meter) -> None:
        with self.lock:
            if meter in self.running:
                self.running.remove(meter)
            self.stream.write(f"\r\x1b[K{UNITS[meter.stage][2]} {meter.table}: {meter.describe()}\n")
            self._draw()

    def close(self) -> None:
        with self.lock:
            self.running.clear()
            self._draw()

    def _draw(self) -> None:
        width = shutil.get_terminal_size().columns - 1
        unit = {m.stage: UNITS[m.stage][0] for m in self.running}
        line = " · ".join(f"{m.table} {m.count:,} {unit[m.stage]}" for m in self.running)
        self.stream.write("\r\x1b[K" + (f"{line[:width]}" if line else ""))
        self.stream.flush()
