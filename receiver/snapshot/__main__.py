"""build_sidecar_in_child's child: python -m receiver.snapshot SEGMENT INDEX_DIR."""

import sys
from pathlib import Path

from receiver.snapshot.scan import build_sidecar

if len(sys.argv) != 3:
    sys.exit("usage: python -m receiver.snapshot SEGMENT INDEX_DIR")
build_sidecar(Path(sys.argv[1]), Path(sys.argv[2]))
