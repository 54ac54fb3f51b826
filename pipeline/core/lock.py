"""One writer per data dir: a lock file that names its holder.

Two scrapes into one data dir once crawled the same store at twice the allowed rate, and
two stages writing one manifest can interleave. Every command that writes a data dir
(scrape, the stages, snapshot, publish) holds ``<data_dir>/.gemcurate.lock`` while it
runs. It is an ``flock``: the kernel releases it when the process ends, however it ends
(SIGKILL included), so a stale lock file never blocks a rerun.

Example:
    >>> with data_dir_lock("data", "gemcurate scrape"):
    ...     ...   # a second holder gets DataDirBusy naming this one
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.errors import UserError

LOCK_NAME = ".gemcurate.lock"


class DataDirBusy(UserError, RuntimeError):
    """Another process holds the data dir; the message names it."""


def holder(data_dir: str | Path) -> dict | None:
    """Who holds the lock, as written by the holder (None when nobody wrote one)."""
    try:
        return json.loads((Path(data_dir) / LOCK_NAME).read_text() or "null")
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def data_dir_lock(data_dir: str | Path, what: str) -> Iterator[None]:
    """Hold ``data_dir`` for ``what`` (a command line, for the message), or fail at once.

    Raises:
        DataDirBusy: Naming the holder's command, pid, host and start time.
    """
    from pipeline.core.paths import usable_folder

    d = usable_folder(data_dir)
    try:
        fd = os.open(d / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        raise UserError(f"data.data_dir (--data-dir) {d}: cannot write its lock file "
                        f"{LOCK_NAME} (permission denied); choose a folder you can write") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            h = holder(d) or {}
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("since", 0)))
            raise DataDirBusy(
                f"{d} is in use by `{h.get('what', '?')}` (pid {h.get('pid', '?')} on "
                f"{h.get('host', '?')}, since {since}); wait for it to finish or stop it") from None
        info = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
