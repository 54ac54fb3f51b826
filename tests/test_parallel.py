"""The process pool of the per-image stages: order kept, and no orphans after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pipeline.core.parallel import map_items
from tests.helpers import ROOT


def _square(x: int) -> int:
    return x * x


def test_results_keep_their_order_in_processes_and_serially():
    items = list(range(200))
    assert map_items(_square, items, workers=2, progress=False) == [x * x for x in items]
    assert map_items(_square, items[:10], workers=2, progress=False) == [x * x for x in items[:10]]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper is dead too
        return f.read().split()[2] != "Z"


def test_a_killed_stage_leaves_no_pool_workers_behind():
    code = ("import time\nfrom pipeline.core.parallel import map_items\n"
            "def slow(x):\n    time.sleep(30)\n    return x\n"
            "map_items(slow, list(range(200)), workers=2, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 30
        workers: list[int] = []
        while len(workers) < 2 and time.time() < deadline:
            workers = _children(proc.pid)
            time.sleep(0.1)
        assert len(workers) >= 2, "the pool did not start"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 10
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "pool workers outlived their stage"
    finally:
        if proc.poll() is None:
            proc.kill()
