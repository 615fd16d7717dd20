"""Keep a native library's log lines out of the sweep's own output.

Ray's C++ core prints to the process's file descriptor 2 (a raylet's death banner, `[state-dump]`
lines) between the sweep's per-cell lines. `NativeStderr` points descriptor 2 at a log file while
Python's own `sys.stderr` keeps writing to where descriptor 2 pointed before, so bigbench's
messages (and any traceback) still reach the terminal and the library's lines land in the file,
which the sweep names once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO


class NativeStderr:
    """Descriptor 2 -> `path` (appended) between `start` and `stop`; Python's stderr unchanged."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._saved_fd: int | None = None
        self._saved_stream: IO[str] | None = None

    @property
    def active(self) -> bool:
        return self._saved_fd is not None

    def start(self) -> None:
        """Redirect descriptor 2; Python's sys.stderr writes to a copy of the original."""
        if self.active:
            return
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        self._saved_stream = sys.stderr
        log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        sys.stderr = os.fdopen(os.dup(self._saved_fd), "w", encoding="utf-8",
                               errors="backslashreplace", buffering=1)

    def stop(self) -> None:
        """Put descriptor 2 and sys.stderr back."""
        if self._saved_fd is None:
            return
        try:
            sys.stderr.flush()
            if sys.stderr is not self._saved_stream:
                sys.stderr.close()
        finally:
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            self._saved_fd = None
            sys.stderr = self._saved_stream or sys.__stderr__
            self._saved_stream = None
