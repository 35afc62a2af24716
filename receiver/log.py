"""The log writer: appends records durably to DATA/log/segment-NNNNNNNN.ndjson.

The line format (a CRC-32 per line), segment names and the readers are the contract's
(receiver.contract.framing), shared with every reader; this module writes.

Durability: `SegmentWriter.append` returns only after the record is written and
fsync'd (fdatasync: see `SegmentWriter`). Concurrent appends share fsyncs through a leader/follower group commit:
the first waiter writes and syncs at once, those who arrive meanwhile ride on the
next sync, so throughput is not capped by a timer and no Python lock is held
across a syscall.

Every writer start opens a fresh segment, and a failed write abandons its segment,
so a torn record (crash, disk full) can only be the last line of a segment. Readers
skip such a line with a warning. A segment the writer has closed is sealed: the receiver
compresses it in the background (receiver.compression); the writer holds a shared flock
on the segment it has open, so that nothing compresses that one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from receiver.contract.files import fsync_directory, try_lock
from receiver.contract.framing import (
    encode_record,
    last_seq,
    segment_name,
    segment_number,
    segment_paths,
)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024  # a segment rotates once past this size
WRITER_LOCK_FILE = ".writer.lock"  # in the log directory: one writer per log


class LogError(Exception):
    """Base of the log's domain errors."""


class LogWriteError(LogError):
    """A record could not be made durable; nothing may claim success for it."""

    def __init__(self, message: str, *, path: Path | None = None, errno: int | None = None):
        self.path = path
        self.errno = errno
        super().__init__(message)


class LogRecordError(LogError, ValueError):
    """A record that cannot be encoded as JSON (nothing was written for it)."""


class LogLockedError(LogError):
    """Another process is already writing this log directory."""


class _Waiter:
    """One append's rendezvous with the leader that writes its line."""

    __slots__ = ("wake", "lead", "error")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()  # released by the leader: done (see `error`), or `lead` the next batch
        self.lead = False
        self.error: LogWriteError | None = None


class SegmentWriter:
    """Appends records durably to DATA/log/, with leader/follower group commit.

    `append(record)` assigns the record's `seq`, and returns it once the record is on
    disk; it raises LogWriteError when the record could not be written, so the caller
    answers 503 and never a 2xx.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        next_seq: int | None = None,
        # fdatasync: the segment is append-only, and on Linux fdatasync also flushes the file
        # size a read-back needs, so it is as durable here as fsync, minus the mtime update
        # (measured: 29 vs 41 us of CPU per call). The new file's directory still gets an fsync.
        fsync: Callable[[int], None] = os.fdatasync,
        write: Callable[[int, bytes], int] = os.write,
        on_sealed: Callable[[Path], None] | None = None,
    ):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.max_segment_bytes = max_segment_bytes
        self._fsync = fsync
        self._write = write
        # Called (in the writing thread, so it must return at once) with each segment closed by
        # rotation: it will never be appended to again, so derived caches of it can be built
        # and it can be compressed (receiver.compression).
        self._on_sealed = on_sealed
        # Called by each batch's leader after its records are durable, with (records, seconds
        # of the fdatasync): the receiver's /metrics histograms. It must return at once.
        self.on_batch: Callable[[int, float], None] | None = None
        self._last_sync_seconds = 0.0
        writer_lock = try_lock(self.log_dir / WRITER_LOCK_FILE)
        if writer_lock is None:
            raise LogLockedError(f"{self.log_dir} is being written by another clickledger process")
        self._writer_lock = writer_lock
        existing = segment_paths(self.log_dir)
        # this writer only ever appends to segments it creates: every one here now is sealed
        self.sealed_at_start = existing
        self._segment_no = segment_number(existing[-1]) if existing else 0
        self._next_seq = next_seq if next_seq is not None else last_seq(self.log_dir) + 1
        self._fd: int | None = None
        self._segment_path: Path | None = None
        self._segment_size = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when no batch is being written
        self._pending: list[bytes] = []
        self._waiters: list[_Waiter] = []  # one per pending line, in the same order
        self._leader_active = False
        self._closing = False  # close() waits on _idle: only then is notifying it worth its cost
        self.last_error: LogWriteError | None = None
        self.closed = False

    # -- segment management (called only by the leader, outside the condition lock)

    def _open_segment(self) -> None:
        self._segment_no += 1
        path = self.log_dir / segment_name(self._segment_no)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        try:
            # held while the segment is open: nothing compresses a segment a writer has open
            # (receiver.compression); the kernel drops it when the descriptor closes, or we die
            fcntl.flock(fd, fcntl.LOCK_SH)
            fsync_directory(self.log_dir)  # the new file's directory entry must survive a crash too
        except OSError:
            os.close(fd)
            raise
        self._fd, self._segment_path, self._segment_size = fd, path, 0

    def _abandon_segment(self, good_size: int) -> None:
        """After a failed write: cut back unacknowledged bytes, then never write this segment again."""
        if self._fd is None:
            return
        # If the cut fails, the torn tail stays as the last line of this segment; readers skip it.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, good_size)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
        if good_size == 0 and self._segment_path is not None:
            # Nothing in it was ever acknowledged: remove it and reuse its number, so an outage
            # that fails every write does not leave a trail of empty segments.
            try:
                os.unlink(self._segment_path)
                self._segment_no -= 1
            except OSError:
                pass

    def _write_batch(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        if self._fd is None or self._segment_size >= self.max_segment_bytes:
            sealed = None
            if self._fd is not None:
                fd, self._fd = self._fd, None  # never keep a descriptor that may be closed (and reused)
                with contextlib.suppress(OSError):  # its records are fsync'd already
                    os.close(fd)
                sealed = self._segment_path
            self._open_segment()
            if sealed is not None and self._on_sealed is not None:
                with contextlib.suppress(Exception):  # a cache hook must never fail a durable write
                    self._on_sealed(sealed)
        good_size = self._segment_size
        try:
            view = memoryview(data)
            while view:
                written = self._write(self._fd, view)
                view = view[written:]
            started = time.perf_counter()
            self._fsync(self._fd)
            self._last_sync_seconds = time.perf_counter() - started
        except OSError:
            self._abandon_segment(good_size)
            raise
        self._segment_size += len(data)

    # -- public API

    def append(self, record: dict[str, Any]) -> int:
        with self._lock:  # held only for bookkeeping, never across a syscall
            if self.closed:
                raise LogWriteError("the log writer is closed", path=self.log_dir)
            seq = self._next_seq
            record["seq"] = seq
            try:
                line = encode_record(record)
            except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
                raise LogRecordError(f"record cannot be encoded: {exc}") from exc
            self._next_seq += 1
            waiter = _Waiter()
            self._pending.append(line)
            self._waiters.append(waiter)
            lead = not self._leader_active
            self._leader_active = True
        if not lead:
            # Woken by the leader that wrote our line, or promoted to write the next batch.
            waiter.wake.acquire()
            if not waiter.lead:
                if waiter.error is not None:
                    raise waiter.error
                return seq
        self._lead(waiter)
        if waiter.error is not None:
            raise waiter.error
        return seq

    def _lead(self, me: _Waiter) -> None:
        """Write and sync every pending line (ours among them), wake their writers, then hand on.

        Each follower sleeps on its own lock, so waking a batch is one release per follower,
        with no shared condition for them all to fight over; the first follower of the next
        batch becomes its leader at once, so no one waits for a timer.
        """
        with self._lock:
            lines, waiters = self._pending, self._waiters
            self._pending, self._waiters = [], []
        error = None
        try:
            self._write_batch(lines)
        except OSError as exc:
            error = LogWriteError(f"could not write the log: {exc.strerror or exc}",
                                  path=self._segment_path or self.log_dir, errno=exc.errno)
        except BaseException as exc:  # never leave followers waiting forever
            error = LogWriteError(f"could not write the log: {exc!r}", path=self.log_dir)
        self.last_error = error
        on_batch = self.on_batch
        if error is None and on_batch is not None:
            with contextlib.suppress(Exception):  # a metrics hook must never fail a durable write
                on_batch(len(lines), self._last_sync_seconds)
        for waiter in waiters:
            waiter.error = error
            if waiter is not me:
                waiter.wake.release()
        with self._lock:
            if self._waiters:
                successor = self._waiters[0]
                successor.lead = True
                successor.wake.release()
            else:
                self._leader_active = False
                if self._closing:
                    self._idle.notify_all()

    def resume_at(self, next_seq: int) -> None:
        """Set the seq of the next record; only before the first append (the caller read the log's top)."""
        with self._lock:
            if self._segment_path is not None or self._pending:
                raise LogError("resume_at must come before the first append")
            self._next_seq = next_seq

    @property
    def healthy(self) -> bool:
        return not self.closed and self.last_error is None

    @property
    def segment_path(self) -> Path | None:
        return self._segment_path

    def close(self) -> None:
        with self._lock:
            self._closing = True
            while self._leader_active:
                self._idle.wait()
            self.closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self._writer_lock.release()
