"""Atomic file writes: a reader (or a Snakemake rule) never sees a half-written file.

Everything is written to a temporary file beside the target, flushed and fsynced, then moved over
the target with os.replace; on any error the temporary file is removed and the target untouched.
The result gets the mode a plain `open()` would give (0666 less the umask), not mkstemp's private
0600, so results on a shared cluster stay readable by the group. A kill between the temporary
file's creation and the replace leaves `.NAME.XXXXXXXX.tmp` behind; `remove_stale_temp_files`
clears those when the next run starts.
Standard library only, so the numpy-only `hieramamba.evaluation` can use it too.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"
# `.{target name}.{mkstemp's 8 random characters}.tmp`: only names atomic_open itself makes
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only swap)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # elsewhere: set and restore at once; the lock keeps our own threads consistent
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing (`mode` "w" or "wb"); it replaces `path` on a clean exit."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only ('w' or 'wb'), got mode {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() would not
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, data: Any, **dump_kwargs: Any) -> None:
    """JSON with indent 2 and a final newline unless `dump_kwargs` say otherwise."""
    dump_kwargs.setdefault("indent", 2)
    atomic_write_text(path, json.dumps(data, **dump_kwargs) + "\n")


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed atomic write left in `directory`; returns what it removed.

    Call it only where no other process is writing (the start of a run, in the run's own folders).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in sorted(directory.iterdir()):
        if _TEMP_NAME.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
