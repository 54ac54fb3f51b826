"""Run a per-image function over many items, in processes, with a progress bar.

The per-image stages (fingerprinting, filtering, cropping, pair verification)
share this one loop so that worker count, chunking and progress behave the
same everywhere.

Example:
    >>> rows = map_items(score_file, items, workers=0, desc="filter", progress=True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm

SERIAL_BELOW = 64  # starting processes costs more than it saves on small batches
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Worker initializer: the kernel kills this worker when the stage process dies.

    Without it, ``kill -9`` of a stage left its pool workers running as orphans (about
    175 MB each) until they finished their chunk or forever. Linux only; elsewhere a
    no-op (the pool's own shutdown still covers a normal exit).
    """
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the call: follow it now
        os._exit(1)


@contextlib.contextmanager
def _single_threaded_opencv() -> Iterator[None]:
    """OpenCV at one thread while worker processes are forked and run — and after.

    The processes are the parallelism: OpenCV's default of one thread per core in
    every worker oversubscribes the machine. It is set in the parent *before* the
    fork, which the workers inherit. It is not set back: ``cv2.setNumThreads`` in a
    forked child waits forever on the thread pool the parent left behind, and a process
    that ran a pool is forked again later (a test's own pool, a task runner), whose
    children then call this again. At one thread there is no pool to inherit, and the
    call is skipped where the count already is one.
    """
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    yield


def map_items(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 0, desc: str = "",
              progress: bool = True, chunksize: int = 16) -> list[Any]:
    """``[fn(x) for x in items]``, in ``workers`` processes (0: one per CPU), order kept.

    ``fn`` must be a module-level function (it is pickled to the workers).
    """
    out: list[Any] = []
    with tqdm(total=len(items), desc=desc, unit="img", disable=not progress) as bar:
        if workers == 1 or len(items) < SERIAL_BELOW:
            for it in items:
                out.append(fn(it))
                bar.update()
        else:
            with _single_threaded_opencv(), \
                    ProcessPoolExecutor(workers or None, initializer=_die_with_parent) as pool:
                for r in pool.map(fn, items, chunksize=chunksize):
                    out.append(r)
                    bar.update()
    return out
