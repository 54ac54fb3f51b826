"""Run the demo storefront as a real process and wait until it listens.

The demo, the tests and the benchmarks all start the storefront this one way: a
``gemcurate store serve`` child on 127.0.0.1 that writes its bound port to a
file once it listens, so no caller guesses with sleeps.

Example:
    >>> with storefront(["--seed", "3", "--classes", "4"]) as store:
    ...     store.stats()["requests"]
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError


class StorefrontError(UserError, RuntimeError):
    """The storefront process did not start; the message holds its log."""


@dataclass
class RunningStorefront:
    """A storefront child process and its address."""

    proc: subprocess.Popen
    base_url: str
    args: list[str]
    log: Path

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def get(self, path: str, headers: dict | None = None, timeout: float = 30
            ) -> tuple[int, dict, bytes]:
        """``GET path`` → (status, headers, body), without raising on HTTP errors."""
        req = urllib.request.Request(self.base_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def stats(self) -> dict:
        """The storefront's ``/_stats`` counters."""
        return json.loads(self.get("/_stats")[2])

    def reset_stats(self) -> None:
        req = urllib.request.Request(self.base_url + "/_stats/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self, timeout: float = 10) -> None:
        """Terminate the process (kill it if it does not end within ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(args: list[str] | None = None, port: int = 0, log: str | Path | None = None,
          cache_dir: str | Path | None = None, cwd: str | Path | None = None,
          timeout: float = 120, command: list[str] | None = None) -> RunningStorefront:
    """Start ``gemcurate store serve ARGS`` on ``port`` (0: a free one) and wait for it.

    Args:
        args: More ``store serve`` flags (catalog, rate limit, faults …).
        port: The port to bind; 0 lets the OS pick.
        log: Where its output goes (default: a temporary file).
        cache_dir: The rendered-image cache (default: the storefront's own default).
        cwd: Its working directory.
        timeout: Seconds to wait for it to listen.
        command: How to run gemcurate (default: this interpreter's ``-m pipeline.interfaces.cli``;
            e.g. ``[".../venv/bin/gemcurate"]`` for another installation).

    Raises:
        StorefrontError: It exited or did not listen in time (the message holds its log).
    """
    args = [str(a) for a in (args or [])]
    tmp = Path(tempfile.mkdtemp(prefix="gemcurate-store-"))
    port_file = tmp / "port"
    log_path = Path(log) if log else tmp / "store.log"
    cmd = [*(command or [sys.executable, "-m", "pipeline"]), "store", "serve", "--port", str(port),
           "--port-file", str(port_file), *(["--cache-dir", str(cache_dir)] if cache_dir else []),
           *args]
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise StorefrontError(f"the storefront did not start: {log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    return RunningStorefront(proc, f"http://127.0.0.1:{port_file.read_text().strip()}", args, log_path)


@contextlib.contextmanager
def storefront(args: list[str] | None = None, **kwargs) -> Iterator[RunningStorefront]:
    """:func:`start` as a context manager that always stops the process."""
    store = start(args, **kwargs)
    try:
        yield store
    finally:
        store.stop()
