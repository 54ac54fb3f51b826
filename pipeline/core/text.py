"""Untrusted text made safe to show: control characters escaped, never interpreted.

Store pages, site files, CSV imports and web forms put text into gemcurate (labels, URLs,
notes, reasons, error details). Written raw to a terminal, ``\\x1b[2J`` clears the screen
and an OSC sequence can retitle the window or hide text; shown on a page it is noise.
:func:`printable` writes every C0/C1 control character (and DEL) as a visible escape
(``\\x1b``), keeping newlines and tabs only where asked.

Example:
    >>> printable("ok\\x1b[2J")
    'ok\\\\x1b[2J'
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ALL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object, keep_newlines: bool = False) -> str:
    """``text`` as a string with control characters escaped (``\\n``/``\\t`` kept if asked)."""
    s = "" if text is None else str(text)
    pattern = _CONTROL if keep_newlines else _CONTROL_ALL
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)
