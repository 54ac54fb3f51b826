"""The one error type the CLI reports as a message (exit 1) instead of a traceback.

A stage raises a subclass of :class:`UserError` when the cause is in the input or
the state of the data (a missing manifest, a failed or stale validation, a refused
publish), so the message is what the person running it needs to read.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message is for the user: printed as ``gemcurate: <message>``, exit 1."""
