"""DATA/config.toml as the receiver serves it: re-read when it changes on disk.

The model and its validation are the contract's (receiver.contract.config and
receiver.contract.config_file), shared with the pipeline; the receiver adds only the
hot reload, so a rotated api_key stops working with the next request, without a restart.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from receiver.contract.config import Config, ConfigError
from receiver.contract.config_file import load_config


class ConfigStore:
    """The current config, re-read when config.toml changes on disk.

    One `stat` per request decides whether to re-read, so an edit (a regenerated key)
    takes effect at the next request (seed 003: "invalidates the old one immediately");
    parsing happens only on change. A broken edit keeps the last good config serving and
    is reported in `error` (and by /healthz), so a typo cannot take postbacks down.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._path_text = str(self.path)  # os.stat of a str skips the os.fspath round trip
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._config = load_config(self.path)
        self.error: str | None = None
        self.reloads = 0  # edits read and put in service since start (shown by /metrics)
        self.refused_reloads = 0  # edits refused as invalid

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path_text)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> Config:
        stamp = self._stat()
        if stamp != self._stamp and stamp is not None:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._config = load_config(self.path)
                        self.error = None
                        self.reloads += 1
                    except ConfigError as exc:
                        self.error = str(exc)
                        self.refused_reloads += 1
                    self._stamp = stamp
        return self._config
