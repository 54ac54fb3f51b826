"""The annotator decisions table: history, latest wins, applied over machine flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pipeline.core import decisions


def manifest_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "image_id": ["a", "b", "c", "d"],
        "label": ["ruby", "ruby", "spinel", "ruby"],
        "excluded_reason": ["hand", None, "label_conflict", "corrupt"],
        "excluded_detail": ["hand score 0.61", None, "x", "bad"],
        "needs_review": [True, False, True, False],
        "review_reason": ["hand", None, "label_conflict", None],
    })


def test_latest_decision_wins_and_history_is_kept(tmp_path):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    db.record("a", "reject", "ana", decided_at=t0)
    db.record("a", "accept", "bo", decided_at=t0 + timedelta(hours=1), note="stone is visible")
    assert len(db.history()) == 2
    latest = db.latest()
    assert latest.set_index("image_id").loc["a", "decision"] == "accept"
    assert latest.set_index("image_id").loc["a", "reviewer"] == "bo"


@pytest.mark.parametrize("kwargs,msg", [
    ({"decision": "maybe"}, "expected one of"),
    ({"decision": "relabel"}, "needs a label"),
    ({"decision": "accept", "label": "ruby"}, "only relabel"),
    ({"decision": "accept", "reviewer": " "}, "reviewer is required"),
])
def test_malformed_decisions_are_refused(tmp_path, kwargs, msg):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    args = {"image_id": "a", "decision": "accept", "reviewer": "ana", **kwargs}
    with pytest.raises(decisions.DecisionError, match=msg):
        db.record(**args)
    assert db.history().empty


def test_apply_overrides_the_machine(tmp_path):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    db.record("a", "accept", "ana")          # flagged as a hand, a person says keep
    db.record("b", "reject", "ana")          # passed every check, a person says out
    db.record("c", "relabel", "bo", label="ruby")
    db.record("d", "accept", "bo")           # a corrupt download cannot be accepted
    out = decisions.apply(manifest_rows(), db.latest()).set_index("image_id")
    assert pd.isna(out.loc["a", "excluded_reason"]) and not out.loc["a", "needs_review"]
    assert out.loc["b", "excluded_reason"] == decisions.REJECTED
    assert out.loc["c", "label"] == "ruby" and out.loc["c", "label_original"] == "spinel"
    assert pd.isna(out.loc["c", "excluded_reason"])
    assert out.loc["d", "excluded_reason"] == "corrupt"
    assert out.loc["a", "decided_by"] == "ana"
