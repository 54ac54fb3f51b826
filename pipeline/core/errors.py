"""The one error type the CLI reports as a message (exit 1) instead of a traceback.

A stage raises a subclass of :class:`UserError` when the cause is in the input or
the state of the data (a missing manifest, a failed or stale validation, a refused
publish), so the message is what the person running it needs to read.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Every exit code gemcurate's commands end with: one list for the CLI, the scrape's
    statuses and the scheduler that reads them (``pipeline/interfaces/airflow/orchestration.py``)."""

    OK = 0                #: done (a crawl with dead links too: they are listed)
    ERROR = 1             #: a UserError (bad input, damaged data) or an unexpected one
    USAGE = 2             #: configuration or command line: no retry can fix it
    BANNED = 3            #: the store said stop
    INCOMPLETE = 4        #: pages failed this pass and may heal: a rerun retries them
    STOPPED = 5           #: a signal, a Retry-After too long, a full disk: a rerun resumes
    DISALLOWED = 6        #: robots.txt forbids the start URLs
    INTERRUPTED = 130     #: Ctrl-C


class UserError(Exception):
    """An error whose message is for the user: printed as ``gemcurate: <message>``, exit 1."""
