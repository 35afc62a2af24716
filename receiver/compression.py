"""Compressing sealed log segments: segment-NNNNNNNN.ndjson becomes segment-NNNNNNNN.ndjson.zst.

A segment is sealed once no writer will append to it again: when the writer rotates past
it, and every segment a receiver finds at its start (it writes a new one). Sealed segments
are compressed in the background (one zstd frame of exactly the plain bytes, content size
in its header, the plain file's mtime; see receiver.contract.framing for the reading side
and docs/log-format.md for the level, chosen by measurement).

The steps, so that a crash at any point loses nothing and every reader sees exactly one
complete form of each segment (the plain file while it exists, by the framing's rule):

1. read the plain segment and compress it in memory;
2. write the frame to a hidden temporary file (`.segment-NNNNNNNN.ndjson.zst.tmp`, which no
   reader lists), give it the plain file's mtime, fsync it;
3. read the temporary file back and check that it decompresses to exactly the plain bytes;
4. rename it to segment-NNNNNNNN.ndjson.zst and fsync the directory: both forms exist, the
   plain one is read;
5. remove the plain segment and fsync the directory: the compressed one is read.

`recover` finishes or undoes what a crash left: it removes temporary files, and where both
forms exist it checks the compressed one against the plain one again, then removes the
plain one (or, should they differ, the compressed one). Every job recovers first. Jobs
take DATA/log/.compress.lock, so two of them (a receiver's, an orphan of a killed one, the
offline generator's) never work at once. Which segments are sealed: every one but the
newest, the newest too when no writer holds the log or the writer says so (see
`sealed_plain_segments`), and never one a writer has open (it holds a shared flock on it,
receiver.log).

The receiver runs jobs through `BackgroundCompressor`: in a child process
(`python -m receiver.compression LOG_DIR [SEALED_SEGMENT ...]`) once there is more than a
few MiB to compress, so the serving process never holds the GIL for seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from receiver.contract.files import fsync_directory, try_lock, write_atomically
from receiver.contract.framing import (
    SEGMENT_RE,
    compressed_path,
    is_compressed,
    read_segment,
    segment_name_of,
    segment_paths,
)
from receiver.log import WRITER_LOCK_FILE

log = logging.getLogger("clickledger.compression")

# zstd level 3, chosen by measurement (docs/log-format.md, "The level, by measurement"): 103
# bytes per event on the offline generator's traffic (1,136 plain) at ~690 MB/s on one core;
# levels 6 to 19 save 13% to 34% more for 3.5x to 280x the CPU.
LEVEL = 3
LOCK_FILE = ".compress.lock"  # in the log directory: one compression job at a time
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"  # `.segment-NNNNNNNN.ndjson.zst.tmp`: hidden, never a segment
# the points between the steps, in order: `pause` hooks (and the kill -9 tests) stop at each
STEPS = ("temp-written", "temp-synced", "verified", "renamed", "published", "plain-removed", "done")
# In the receiver, from this many bytes to compress on, a job runs in a child process.
CHILD_MIN_BYTES = 4 * 1024 * 1024
LOCK_WAIT_SECONDS = 600.0


class CompressionError(Exception):
    """A segment could not be compressed; its plain form is left as it was."""


def temp_path(segment: Path) -> Path:
    return segment.with_name(f"{TEMP_PREFIX}{compressed_path(segment).name}{TEMP_SUFFIX}")


def compressor(level: int = LEVEL) -> zstandard.ZstdCompressor:
    """The compressor of sealed segments: one frame with the content size and a checksum."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True)


@contextlib.contextmanager
def _not_being_written(plain: Path) -> Iterator[os.stat_result]:
    """The plain segment's stat, while no writer has it open (a writer holds a shared flock on
    its segment: see receiver.log); CompressionError when one has."""
    fd = os.open(plain, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompressionError(f"{plain.name} is being written: only sealed segments are compressed") from None
        yield os.fstat(fd)
    finally:
        os.close(fd)  # drops the flock


def compress_segment(plain: Path, *, level: int = LEVEL, durable: bool = True,
                     pause: Callable[[str], None] | None = None) -> Path:
    """Compress one sealed plain segment by the steps of the module's docstring; returns the
    compressed path. `durable=False` skips the fsyncs (for scratch logs: the offline
    generator). `pause(step)` is called at each of STEPS (for the crash tests)."""
    plain = Path(plain)
    final, tmp = compressed_path(plain), temp_path(plain)
    step = pause or (lambda name: None)
    with _not_being_written(plain) as st:
        data = plain.read_bytes()
        if len(data) != st.st_size:
            raise CompressionError(f"{plain.name} changed while it was read")
        frame = compressor(level).compress(data)
        tmp.unlink(missing_ok=True)  # a crashed job's: never a reader's file
        try:
            with open(tmp, "xb") as f:
                f.write(frame)
                f.flush()
                step("temp-written")
                os.utime(f.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))  # readers key caches on it
                if durable:
                    os.fsync(f.fileno())
            step("temp-synced")
            if _read_back(tmp) != data:
                raise CompressionError(f"the compressed copy of {plain.name} does not read back as the segment")
            step("verified")
            again = os.stat(plain)
            if (again.st_size, again.st_mtime_ns, again.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
                raise CompressionError(f"{plain.name} changed while it was compressed")
            os.rename(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        step("renamed")
        if durable:
            fsync_directory(plain.parent)
        step("published")
        plain.unlink()
    step("plain-removed")
    if durable:
        fsync_directory(plain.parent)
    step("done")
    return final


def write_compressed_segment(plain: Path, data: bytes, *, level: int = LEVEL, durable: bool = True) -> Path:
    """Write a sealed segment that a writer holds in memory (`data`: its lines) straight in its
    compressed form, by a temporary file and a rename, so that no reader ever sees part of
    it; returns its path. For writers that never need the plain file: the offline generator."""
    final = compressed_path(plain)
    write_atomically(final, temp_path(plain), [compressor(level).compress(data)], durable=durable, exclusive=True)
    return final


def _read_back(path: Path) -> bytes | None:
    """A compressed file's content, or None when it does not decompress whole."""
    try:
        return zstandard.ZstdDecompressor().decompress(path.read_bytes(), allow_extra_data=False)
    except zstandard.ZstdError:
        return None


@dataclass
class Recovered:
    """What `recover` found and did."""

    temp_removed: list[str] = field(default_factory=list)
    plain_removed: list[str] = field(default_factory=list)  # both forms, the compressed one verified
    compressed_removed: list[str] = field(default_factory=list)  # both forms, the compressed one bad

    def __bool__(self) -> bool:
        return bool(self.temp_removed or self.plain_removed or self.compressed_removed)


def _leftovers(log_dir: Path) -> tuple[list[Path], list[Path]]:
    """(temporary files, plain segments that also have a compressed form) in `log_dir`."""
    temps, plain, compressed = [], set(), set()
    for entry in os.scandir(log_dir):
        name = entry.name
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX) and \
                SEGMENT_RE.match(name[len(TEMP_PREFIX):-len(TEMP_SUFFIX)]):
            temps.append(log_dir / name)
        elif SEGMENT_RE.match(name):
            (compressed if is_compressed(name) else plain).add(segment_name_of(name))
    return sorted(temps), [log_dir / name for name in sorted(plain & compressed)]


def recover(log_dir: Path, *, durable: bool = True) -> Recovered:
    """Finish or undo the jobs a crash interrupted (call it holding the job lock)."""
    log_dir = Path(log_dir)
    done = Recovered()
    temps, doubles = _leftovers(log_dir)
    for tmp in temps:
        tmp.unlink(missing_ok=True)
        done.temp_removed.append(tmp.name)
    for plain in doubles:
        final = compressed_path(plain)
        try:
            same = _read_back(final) == read_segment(plain)
        except FileNotFoundError:  # another process finished it meanwhile
            continue
        if same:
            plain.unlink(missing_ok=True)
            done.plain_removed.append(plain.name)
        else:  # the plain form wins: the compressed one is made again
            final.unlink(missing_ok=True)
            done.compressed_removed.append(final.name)
    if done and durable:
        fsync_directory(log_dir)
    for what, names in (("removed the temporary file", done.temp_removed),
                        ("finished compressing (plain form removed)", done.plain_removed),
                        ("removed a compressed form that did not match its plain segment", done.compressed_removed)):
        for name in names:
            log.warning("log recovery: %s %s", what, name)
    return done


def _writer_holds(log_dir: Path) -> bool:
    """Whether a writer (a receiver, the offline generator) holds the log's writer lock now."""
    lock = try_lock(log_dir / WRITER_LOCK_FILE)
    if lock is None:
        return True
    lock.release()
    return False


def sealed_plain_segments(log_dir: Path, sealed: Iterable[Path] = ()) -> list[Path]:
    """The plain segments that are sealed, oldest first: those a job compresses.

    Every segment but the newest is: a writer only ever appends to the segment it created
    last, which is the newest. The newest is sealed when no writer holds the log, or when
    the caller names it in `sealed` (a writer knows the segments it found at its start and
    those it rotated past): otherwise it may be one a writer has just created and not yet
    locked. A segment a writer has open (its shared flock) is never sealed.
    """
    log_dir = Path(log_dir)
    paths = segment_paths(log_dir)
    named = {segment_name_of(p) for p in sealed}
    newest = paths[-1] if paths else None
    out = []
    for path in paths:
        if is_compressed(path):
            continue
        if path == newest and path.name not in named and _writer_holds(log_dir):
            continue
        with contextlib.suppress(CompressionError, FileNotFoundError), _not_being_written(path):
            out.append(path)
    return out


@contextlib.contextmanager
def job_lock(log_dir: Path, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold DATA/log/.compress.lock, waiting up to `wait` seconds for another job to end."""
    deadline = time.monotonic() + wait
    while (lock := try_lock(Path(log_dir) / LOCK_FILE)) is None:
        if time.monotonic() > deadline:
            raise CompressionError(f"another compression job held {Path(log_dir) / LOCK_FILE} for {wait:.0f} s")
        time.sleep(0.05)
    with lock:
        yield


@dataclass
class JobSummary:
    recovered: Recovered
    compressed: list[Path] = field(default_factory=list)
    plain_bytes: int = 0
    compressed_bytes: int = 0
    seconds: float = 0.0


def compress_sealed(log_dir: Path, *, sealed: Iterable[Path] = (), level: int = LEVEL, durable: bool = True,
                    pause: Callable[[str], None] | None = None,
                    stop: Callable[[], bool] | None = None) -> JobSummary:
    """One job: under the job lock, recover, then compress every sealed plain segment (see
    `sealed_plain_segments`), oldest first, until `stop()` says so."""
    started = time.perf_counter()
    log_dir = Path(log_dir)
    with job_lock(log_dir):
        summary = JobSummary(recover(log_dir, durable=durable))
        for plain in sealed_plain_segments(log_dir, sealed):
            if stop is not None and stop():
                break
            try:
                size = plain.stat().st_size
                final = compress_segment(plain, level=level, durable=durable, pause=pause)
            except FileNotFoundError:  # compressed by a job that held the lock before this one
                continue
            except CompressionError as exc:
                log.warning("%s", exc)
                continue
            summary.compressed.append(final)
            summary.plain_bytes += size
            summary.compressed_bytes += final.stat().st_size
    summary.seconds = time.perf_counter() - started
    return summary


def work_to_do(log_dir: Path, sealed: Iterable[Path] = ()) -> int:
    """Bytes of plain segments a job would compress (plus 1 when a crash left something to
    recover): 0 when a job has nothing to do. Lists the directory, reads no segment."""
    temps, doubles = _leftovers(Path(log_dir))
    return sum(p.stat().st_size for p in sealed_plain_segments(Path(log_dir), sealed)) + bool(temps or doubles)


class BackgroundCompressor:
    """The receiver's compression worker: one thread that runs a job whenever `request()` was
    called since its last one (at the start, after each rotation), in a child process when
    there is much to compress. `close()` stops it; a child still working is terminated,
    which is as safe as any crash (the next job recovers)."""

    def __init__(self, log_dir: Path, *, child_min_bytes: int = CHILD_MIN_BYTES):
        self.log_dir = Path(log_dir)
        self.child_min_bytes = child_min_bytes
        self._sealed: set[Path] = set()  # segments the writer said are sealed, not yet compressed
        self._wanted = threading.Event()
        self._closing = False
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.jobs = 0  # jobs run, for tests and the curious
        self._thread = threading.Thread(target=self._run, name="clickledger-compression", daemon=True)
        self._thread.start()

    def request(self, sealed: Iterable[Path] = ()) -> None:
        """Compress what is sealed and still plain, soon (returns at once); `sealed` names
        segments the writer knows are sealed (see `sealed_plain_segments`)."""
        with self._lock:
            self._sealed.update(Path(p) for p in sealed)
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._closing:
                return
            self._wanted.clear()
            try:
                self._job()
            except Exception as exc:  # the segments stay plain, and readable; the next job retries
                log.warning("could not compress the sealed log segments: %s", exc)
            self.jobs += 1

    def _job(self) -> None:
        with self._lock:
            sealed = sorted(p for p in self._sealed if p.exists())  # (the compressed ones are done)
            self._sealed = set(sealed)
        todo = work_to_do(self.log_dir, sealed)
        if not todo:
            return
        if todo < self.child_min_bytes:
            compress_sealed(self.log_dir, sealed=sealed, stop=lambda: self._closing)
            return
        with self._lock:
            if self._closing:
                return
            self._child = subprocess.Popen(
                [sys.executable, "-m", "receiver.compression", str(self.log_dir), *map(str, sealed)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = self._child.communicate()
        code, self._child = self._child.returncode, None
        if code != 0 and not self._closing:
            said = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise CompressionError(f"the compression job exited {code}: {said[0]}")

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._closing = True
            if self._child is not None:
                with contextlib.suppress(OSError):
                    self._child.terminate()
        self._wanted.set()
        self._thread.join(timeout)


def main(argv: list[str] | None = None) -> int:
    """`python -m receiver.compression LOG_DIR [SEALED_SEGMENT ...]`: one job over LOG_DIR (the
    receiver's child; it names the segments it knows are sealed, see `sealed_plain_segments`).

    CLICKLEDGER_COMPRESS_PAUSE_AT=STEP (one of STEPS) makes it print `paused at STEP` and wait
    there, up to a minute, at that step of each segment: the crash tests kill it there.
    """
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m receiver.compression LOG_DIR [SEALED_SEGMENT ...]", file=sys.stderr)
        return 2
    pause_at = os.environ.get("CLICKLEDGER_COMPRESS_PAUSE_AT")
    if pause_at is not None and pause_at not in STEPS:
        print(f"CLICKLEDGER_COMPRESS_PAUSE_AT must be one of {', '.join(STEPS)}", file=sys.stderr)
        return 2

    def pause(step: str) -> None:
        if step == pause_at:
            print(f"paused at {step}", flush=True)
            time.sleep(60)

    summary = compress_sealed(Path(args[0]), sealed=[Path(a) for a in args[1:]], pause=pause if pause_at else None)
    print(f"compressed {len(summary.compressed)} segment(s): {summary.plain_bytes:,} -> "
          f"{summary.compressed_bytes:,} bytes in {summary.seconds:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
