"""Durable files in the data directory: a directory's fsync, and the one-writer lock.

Whatever writes under DATA (the log writer, the index snapshots, the wallet ledger) makes a
new file's directory entry durable with `fsync_directory`, and keeps a second process out
with `try_lock`; a file that must appear whole or not at all goes through `write_atomically`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so the entries of files created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, tmp: Path, parts: Iterable[bytes], *, durable: bool = True,
                     exclusive: bool = False) -> None:
    """Write `parts` to `tmp`, then rename it to `path`, so no reader ever sees part of the
    file; with `durable`, the data and then the directory entry are fsynced. `exclusive`
    refuses an existing `tmp` (a concurrent writer of the same file) instead of truncating it.
    A failure removes `tmp` and re-raises."""
    try:
        with open(tmp, "xb" if exclusive else "wb") as f:
            for part in parts:
                f.write(part)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_directory(path.parent)


class FileLock:
    """An exclusive lock held on a lock file until `release()` (or the end of a `with` block).

    The lock is an flock on an open descriptor: the kernel drops it when this process
    exits, however it exits, so a crash never leaves a stale lock behind.
    """

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (closing the descriptor drops the flock); a second call does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def try_lock(path: str | os.PathLike[str]) -> FileLock | None:
    """The exclusive lock on the file at `path` (created if missing), or None at once when
    another process (or another descriptor of this one) holds it: never waits."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return FileLock(path, fd)
