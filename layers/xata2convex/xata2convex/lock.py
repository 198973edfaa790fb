"""The run lock: one writer of a branch's mirror and state at a time, whoever starts the run.

`state/lock.json` holds a lease, written only by conditional writes (create-only, or replace-if-
unchanged), so of two racing acquirers exactly one wins. The object stays after release (marked
released), so every later acquire is a replace-if-unchanged write too.

- The CLI's `sync` and `run` and the sync Lambda `acquire` the lease and start at once.
- The trigger `reserve`s it for a run id; the worker Lambda `claim`s that reservation exactly once
  (an async event delivered twice starts one run).
- A held lease is renewed while the run lives (a background thread, and at every write checkpoint);
  a renewal that finds the lease taken over stops the run before it writes more (`LeaseLost`).
- A lease that expired unreleased was left by a run that died; the run taking it over is told the
  dead run's id (`HeldLease.took_over_from`) so it can close that run's records as failed.
- An unreadable lock file counts as held for one lease length after it was last written (it may be a
  live run's lease damaged in place: letting a second run in is the one thing a lock must not do),
  then it is taken over like an expired lease, so a damaged file never wedges the schedule. The error
  names the file and the command that frees it sooner.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .model import SnapshotError, XataToConvexError
from .snapshot import SnapshotStore, json_bytes
from .storage import Blob, BlobStore, PreconditionFailed

log = logging.getLogger(__name__)

# Covers the worker's 900 s timeout plus a start delay; a crashed run's lock frees itself after it.
DEFAULT_LEASE_SECONDS = 1200.0
RENEWALS_PER_LEASE = 4  # a live run renews every quarter lease: it can miss three before it expires


class LockBusy(XataToConvexError):
    """Another run holds the run lock: the CLI exits 3, the trigger answers 409."""

    exit_code = 3


class LeaseLost(XataToConvexError):
    """This run's lease expired and another run took it over: it must stop before writing more."""


class LockUnreadable(SnapshotError):
    """The lock file is not a lease this version wrote."""


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Lease:
    """`state/lock.json`: who holds the lock, since when and until when (epoch seconds)."""

    run_id: str
    acquired_at: float
    expires_at: float
    started_at: float | None = None  # the run began its work; None while a reservation awaits its worker
    released_at: float | None = None
    took_over_from: str | None = None  # the run whose expired lease this one took over

    def active(self, now: float) -> bool:
        return self.released_at is None and self.expires_at > now

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"runId": self.run_id, "acquiredAt": self.acquired_at}
        data["expiresAt"] = self.expires_at
        optional = {
            "startedAt": self.started_at,
            "releasedAt": self.released_at,
            "tookOverFrom": self.took_over_from,
        }
        return data | {k: v for k, v in optional.items() if v is not None}

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Lease:
        """Strictly: anything but a lease this module wrote is LockUnreadable, naming the file."""

        def bad(reason: str) -> LockUnreadable:
            return LockUnreadable(f"run lock {where} is unreadable: {reason}")

        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise bad("not JSON") from None
        if not isinstance(data, dict):
            raise bad("not a JSON object")
        known = {"runId", "acquiredAt", "expiresAt", "startedAt", "releasedAt", "tookOverFrom"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise bad(f"unknown field(s) {', '.join(unknown)}")

        def time_field(name: str, required: bool) -> float | None:
            value = data.get(name)
            if value is None and not required:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise bad(f"{name} must be a number of epoch seconds")
            return float(value)

        def text_field(name: str, required: bool) -> str | None:
            value = data.get(name)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not value:
                raise bad(f"{name} must be a non-empty string")
            return value

        run_id, acquired, expires = (
            text_field("runId", True),
            time_field("acquiredAt", True),
            time_field("expiresAt", True),
        )
        assert run_id is not None and acquired is not None and expires is not None
        return cls(
            run_id,
            acquired,
            expires,
            started_at=time_field("startedAt", False),
            released_at=time_field("releasedAt", False),
            took_over_from=text_field("tookOverFrom", False),
        )


def _removal_command(where: str) -> str:
    return f"aws s3 rm {shlex.quote(where)}" if where.startswith("s3://") else f"rm {shlex.quote(where)}"


class RunLock:
    """The lock of one database branch's snapshot folder."""

    def __init__(
        self,
        blobs: BlobStore,
        key: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blobs, self.key, self.lease_seconds, self.clock = blobs, key, lease_seconds, clock
        self.where = blobs.describe(key)

    @classmethod
    def for_store(cls, store: SnapshotStore, **kwargs: Any) -> RunLock:
        return cls(store.blobs, f"{store.base}state/lock.json", **kwargs)

    def _read(self) -> tuple[Blob | None, Lease | None, LockUnreadable | None]:
        blob = self.blobs.get(self.key)
        if blob is None:
            return None, None, None
        try:
            return blob, Lease.parse(blob.data, self.where), None
        except LockUnreadable as exc:
            return blob, None, exc

    def holder(self) -> str | None:
        """The run id holding an unexpired lease, if any; LockUnreadable if the file is damaged."""
        _, lease, problem = self._read()
        if problem is not None:
            raise problem
        return lease.run_id if lease is not None and lease.active(self.clock()) else None

    def acquire(self, run_id: str) -> HeldLease:
        """Take the lock for a run that starts now (CLI `sync`/`run`, the sync Lambda)."""
        return self._take(run_id, started=True)

    def reserve(self, run_id: str) -> HeldLease:
        """Take the lock for a run a worker will `claim` (the trigger, before it answers 202)."""
        return self._take(run_id, started=False)

    def _take(self, run_id: str, *, started: bool) -> HeldLease:
        blob, held, problem = self._read()
        now = self.clock()
        if problem is not None and blob is not None:
            free_at = blob.modified + self.lease_seconds
            if free_at > now:
                raise LockBusy(
                    f"{problem}; it counts as held until {iso(free_at)} (one lease after it was last "
                    "written), then the next run takes it over. To free it sooner, once sure no run is "
                    f"going: {_removal_command(self.where)}"
                )
            log.warning("run %s takes over the unreadable run lock %s", run_id, self.where)
        elif held is not None and held.active(now):
            until = iso(held.expires_at)
            raise LockBusy(f"run {held.run_id} is in progress (it holds the run lock until {until})")
        dead = held.run_id if held is not None and held.released_at is None else None
        lease = Lease(
            run_id,
            acquired_at=now,
            expires_at=now + self.lease_seconds,
            started_at=now if started else None,
            took_over_from=dead,
        )
        try:
            if blob is None:
                etag = self.blobs.put(self.key, json_bytes(lease.to_json()), if_none_match=True)
            else:
                etag = self.blobs.put(self.key, json_bytes(lease.to_json()), if_match=blob.etag)
        except PreconditionFailed:
            raise LockBusy("another run took the run lock at the same moment") from None
        if dead is not None:
            log.warning("run %s took over the expired run lock of run %s", run_id, dead)
        return HeldLease(self, lease, etag)

    def claim(self, run_id: str) -> HeldLease:
        """The worker's start: the reservation for run_id becomes a running lease, exactly once."""
        blob, held, problem = self._read()
        if problem is not None:
            raise LockBusy(f"run {run_id} does not hold the run lock ({problem}); not started")
        now = self.clock()
        if blob is None or held is None or held.run_id != run_id or not held.active(now):
            holder = held.run_id if held is not None and held.active(now) else "none"
            raise LockBusy(f"run {run_id} does not hold the run lock (holder: {holder}); not started")
        if held.started_at is not None:
            raise LockBusy(
                f"run {run_id} already started at {iso(held.started_at)} (a repeated delivery); "
                "not started again"
            )
        lease = replace(held, started_at=now, expires_at=now + self.lease_seconds)
        try:
            etag = self.blobs.put(self.key, json_bytes(lease.to_json()), if_match=blob.etag)
        except PreconditionFailed:
            raise LockBusy(f"run {run_id} lost the run lock as it started; not started") from None
        return HeldLease(self, lease, etag)

    def release(self, run_id: str) -> bool:
        """Release run_id's lease, whoever holds this object; False if it no longer holds the lock."""
        blob, held, _ = self._read()
        if blob is None or held is None or held.run_id != run_id or held.released_at is not None:
            log.warning("run %s no longer holds the run lock; nothing to release", run_id)
            return False
        return HeldLease(self, held, blob.etag).release()


class HeldLease:
    """A lease this process wrote: renewed and released only while the lock object is still ours."""

    def __init__(self, lock: RunLock, lease: Lease, etag: str) -> None:
        self._lock, self.lease, self._etag = lock, lease, etag
        self._mutex = threading.Lock()
        self._renewed_at = lock.clock()
        self._lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def run_id(self) -> str:
        return self.lease.run_id

    @property
    def took_over_from(self) -> str | None:
        return self.lease.took_over_from

    @property
    def renew_every(self) -> float:
        return self._lock.lease_seconds / RENEWALS_PER_LEASE

    def _replace(self, lease: Lease) -> None:
        """Write `lease` over the object only if it is still the one this process wrote last."""
        lock = self._lock
        try:
            self._etag = lock.blobs.put(lock.key, json_bytes(lease.to_json()), if_match=self._etag)
        except PreconditionFailed:
            self._lost = LeaseLost(
                f"run {self.run_id} lost the run lock {lock.where}: its lease ran out and another run took "
                "it over; this run stopped before writing more"
            )
            raise self._lost from None
        self.lease = lease

    def renew(self) -> None:
        """Extend the lease by one lease length; LeaseLost if another run took it over."""
        with self._mutex:
            if self._lost is not None:
                raise self._lost
            now = self._lock.clock()
            self._replace(replace(self.lease, expires_at=now + self._lock.lease_seconds))
            self._renewed_at = now

    def ensure_held(self) -> None:
        """The checkpoint before each write: renew when due; LeaseLost stops the run (fail closed).

        A renewal that fails for another reason (the store is unreachable) is retried at the next
        checkpoint while the lease still has time left; after that it stops the run too.
        """
        if self._lost is not None:
            raise self._lost
        now = self._lock.clock()
        if now - self._renewed_at < self.renew_every:
            return
        try:
            self.renew()
        except LeaseLost:
            raise
        except Exception as exc:
            if now + self.renew_every >= self.lease.expires_at:
                raise LeaseLost(
                    f"run {self.run_id} could not renew the run lock {self._lock.where} before its lease "
                    f"ends ({type(exc).__name__}); this run stopped before writing more"
                ) from exc
            log.warning("run %s could not renew the run lock yet: %s", self.run_id, type(exc).__name__)

    def release(self) -> bool:
        """Mark the lease released; False (and nothing written) if another run holds it now."""
        self._stop.set()
        with self._mutex:
            if self._lost is not None:
                log.warning("run %s lost the run lock before releasing it", self.run_id)
                return False
            try:
                self._replace(replace(self.lease, released_at=self._lock.clock()))
            except LeaseLost:
                log.warning("run %s lost the run lock before releasing it", self.run_id)
                return False
        return True

    @contextmanager
    def renewing(self) -> Iterator[HeldLease]:
        """Renew in a background thread while the block runs, so long stretches without a write
        checkpoint (an export) keep the lease too."""
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lease-{self.run_id}", daemon=True)
        self._renewer.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._renewer.join()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.ensure_held()
            except LeaseLost:
                return  # the next write checkpoint raises it in the run itself
            except Exception as exc:  # a checkpoint stops the run when it matters
                log.warning("run %s: lease renewal failed: %s", self.run_id, type(exc).__name__)


@contextmanager
def holding(store: SnapshotStore, run_id: str) -> Iterator[HeldLease]:
    """The lock for a run, acquired here, renewed while the block runs and released after it."""
    lease = RunLock.for_store(store).acquire(run_id)
    try:
        with lease.renewing():
            yield lease
    finally:
        lease.release()
