"""Review flags: reasons accumulate, are not repeated, and leave the queue one by one."""

from __future__ import annotations

import pandas as pd

from pipeline.core.flags import add_review, drop_review_reason, ensure_review_columns


def test_reasons_accumulate_once_and_leave_one_by_one():
    df = pd.DataFrame({"x": [1, 2, 3]})
    ensure_review_columns(df)
    add_review(df, df["x"] >= 2, "hand")
    add_review(df, df["x"] == 3, "crop_no_object")
    add_review(df, df["x"] == 3, "hand")  # no repeat
    assert df["review_reason"].tolist()[1:] == ["hand", "hand;crop_no_object"]
    assert df["needs_review"].tolist() == [False, True, True]
    drop_review_reason(df, df["x"] >= 2, "hand")
    assert pd.isna(df.loc[1, "review_reason"]) and not df.loc[1, "needs_review"]
    assert df.loc[2, "review_reason"] == "crop_no_object" and df.loc[2, "needs_review"]
