"""Atomic file writes: everything pywavernn writes (models, audio, features, checkpoints, reports) goes through
`atomic_write`, so a crash or an error never leaves a half-written file at the target path.

    with atomic_write("out.wav") as fh:
        fh.write(data)          # lands at out.wav only if the block finishes
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object for a temp file beside `path`; fsynced and renamed over `path` on success,
    removed on any failure (the existing file at `path`, if any, is then untouched)."""
    target = Path(os.path.abspath(path))
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # O_EXCL never reuses someone else's file; 0o666 lets the umask set the mode, as for any ordinary file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # the bytes reach the disk before the rename makes them the file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
