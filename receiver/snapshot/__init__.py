"""Index snapshots: derived caches that let the receiver start without re-reading the log.

The log stays the only source of truth. Everything here can be deleted at any time
(`rm -r DATA/index`) and is rebuilt from the segments at the next start.

DATA/index/segment-NNNNNNNN.idx (a *sidecar*) holds what one sealed segment adds to the
indexes. A sidecar is written when its segment is sealed: at rotation (background
thread), at a clean shutdown, or at the next start for a segment that has none (the
active segment of a crashed run), several segments in parallel processes.

DATA/index/base.idx holds the same for a run of the oldest segments, merged, so a start
reads one file instead of merging every sidecar (merging 10M clicks takes a sort, which
pure Python cannot do in seconds; adding a few segments' clicks to sorted arrays can).
It is rewritten in the background after a start that merged anything new.

Every file names the segments it covers with their identity (name, size of the lines,
mtime, CRC-32 of the first and last 64 KiB or, compressed, the zstd frame's checksum: the
same segment in either form, see identity) and carries a format version and a CRC-32 of
its whole content. A file that fails any check is ignored and rebuilt, so a torn, stale or
foreign snapshot can never make a known click unknown or an unknown click known.

The parts, one job each:
- identity: which segment a file covers (SegmentId) and whether it is still the same;
- index_file: what a file holds (IndexData), and writing and reading it;
- scan: a segment's share, read from its lines, and its sidecar (also in a child process:
  `python -m receiver.snapshot SEGMENT INDEX_DIR`, see __main__);
- merge: shares in log order into one;
- load: the start-up loader (load_indexes) and the base.
"""

from receiver.snapshot.identity import SAMPLE_BYTES, SegmentId, same_segments, segment_id
from receiver.snapshot.index_file import (
    INDEX_FORMAT_VERSION,
    MAGIC,
    IndexData,
    read_index_file,
    write_index_file,
)
from receiver.snapshot.load import (
    BASE_NAME,
    PARALLEL_MIN_BYTES,
    Loaded,
    index_dir_for,
    load_indexes,
    to_indexes,
    write_base,
)
from receiver.snapshot.merge import merge
from receiver.snapshot.scan import (
    ClickRow,
    build_sidecar,
    build_sidecar_in_child,
    scan_segment,
    sidecar_path,
)

__all__ = [
    "BASE_NAME",
    "INDEX_FORMAT_VERSION",
    "MAGIC",
    "PARALLEL_MIN_BYTES",
    "SAMPLE_BYTES",
    "ClickRow",
    "IndexData",
    "Loaded",
    "SegmentId",
    "build_sidecar",
    "build_sidecar_in_child",
    "index_dir_for",
    "load_indexes",
    "merge",
    "read_index_file",
    "same_segments",
    "scan_segment",
    "segment_id",
    "sidecar_path",
    "to_indexes",
    "write_base",
    "write_index_file",
]
