"""Review flags: how any stage asks an annotator to look at an image.

A row gets ``needs_review`` and its reason is appended to ``review_reason``
(several reasons are joined by ``;``), so the review queue shows every doubt
any stage had, not only the last one.
"""

from __future__ import annotations

import pandas as pd


def ensure_review_columns(df: pd.DataFrame) -> None:
    """Add empty ``needs_review`` / ``review_reason`` columns when absent (in place)."""
    if "needs_review" not in df.columns:
        df["needs_review"] = pd.Series(False, index=df.index, dtype="boolean")
        df["review_reason"] = pd.Series(None, index=df.index, dtype="string")


def add_review(df: pd.DataFrame, mask: pd.Series, reason: str) -> None:
    """Set ``needs_review`` on ``mask`` rows and append ``reason`` to their ``review_reason``.

    Example:
        >>> add_review(df, df["crop_issue"] == "no_object", "crop_no_object")
    """
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return
    prev = df.loc[mask, "review_reason"].astype("string").fillna("")
    df.loc[mask, "review_reason"] = prev.map(
        lambda r: r if reason in r.split(";") else (f"{r};{reason}" if r else reason))
    df.loc[mask, "needs_review"] = True


def drop_review_reason(df: pd.DataFrame, mask: pd.Series, reason: str) -> None:
    """Remove ``reason`` from the ``mask`` rows' reasons; rows left with none leave the queue."""
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return
    rr = df.loc[mask, "review_reason"].astype("string").fillna("")
    rr = rr.map(lambda r: ";".join(x for x in r.split(";") if x and x != reason))
    df.loc[mask, "review_reason"] = rr.where(rr != "", None)
    df.loc[mask, "needs_review"] = rr != ""
