"""The annotator decisions table: history, latest wins, applied over machine flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pipeline.core import decisions

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def manifest_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "image_id": [A, B, C, D],
        "label": ["ruby", "ruby", "spinel", "ruby"],
        "excluded_reason": ["hand", None, "label_conflict", "corrupt"],
        "excluded_detail": ["hand score 0.61", None, "x", "bad"],
        "needs_review": [True, False, True, False],
        "review_reason": ["hand", None, "label_conflict", None],
    })


def test_latest_decision_wins_and_history_is_kept(tmp_path):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    db.record(A, "reject", "ana", decided_at=t0)
    db.record(A, "accept", "bo", decided_at=t0 + timedelta(hours=1), note="stone is visible")
    assert len(db.history()) == 2
    latest = db.latest()
    assert latest.set_index("image_id").loc[A, "decision"] == "accept"
    assert latest.set_index("image_id").loc[A, "reviewer"] == "bo"


@pytest.mark.parametrize("kwargs,msg", [
    ({"decision": "maybe"}, "expected one of"),
    ({"decision": "relabel"}, "needs a label"),
    ({"decision": "accept", "label": "ruby"}, "only relabel"),
    ({"decision": "accept", "reviewer": " "}, "reviewer is required"),
])
def test_malformed_decisions_are_refused(tmp_path, kwargs, msg):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    args = {"image_id": A, "decision": "accept", "reviewer": "ana", **kwargs}
    with pytest.raises(decisions.DecisionError, match=msg):
        db.record(**args)
    assert db.history().empty


def test_apply_overrides_the_machine(tmp_path):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    db.record(A, "accept", "ana")          # flagged as a hand, a person says keep
    db.record(B, "reject", "ana")          # passed every check, a person says out
    db.record(C, "relabel", "bo", label="ruby")
    db.record(D, "accept", "bo")           # a corrupt download cannot be accepted
    out = decisions.apply(manifest_rows(), db.latest()).set_index("image_id")
    assert pd.isna(out.loc[A, "excluded_reason"]) and not out.loc[A, "needs_review"]
    assert out.loc[B, "excluded_reason"] == decisions.REJECTED
    assert out.loc[C, "label"] == "ruby" and out.loc[C, "label_original"] == "spinel"
    assert pd.isna(out.loc[C, "excluded_reason"])
    assert out.loc[D, "excluded_reason"] == "corrupt"
    assert out.loc[A, "decided_by"] == "ana"


KNOWN = decisions.Known(frozenset({A, B, C}), frozenset({"ruby", "spinel"}))


@pytest.mark.parametrize(("kwargs", "msg"), [
    ({"image_id": "../../evil"}, "not an image id"),
    ({"image_id": D}, "no such image in this project"),
    ({"decision": "relabel", "label": "rubyy"}, r"not a class of this project \(did you mean 'ruby'\?\)"),
    ({"decision": "relabel", "label": "../../evil"}, "looks like a path"),
    ({"decision": "relabel", "label": "=HYPERLINK(\"http://127.0.0.1\")"}, "formula"),
    ({"decision": "relabel", "label": "x" * 300}, "longer than 128"),
    ({"reviewer": "ana\x00"}, "control characters"),
    ({"note": "n" * 5000}, "note is longer"),
])
def test_hostile_decisions_are_refused(tmp_path, kwargs, msg):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    args = {"image_id": A, "decision": "accept", "reviewer": "ana", "known": KNOWN, **kwargs}
    with pytest.raises(decisions.DecisionError, match=msg):
        db.record(**args)
    assert db.history().empty


def test_a_new_class_needs_the_flag_and_a_slug(tmp_path):
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    with pytest.raises(decisions.DecisionError, match="--new-class"):
        db.record(A, "relabel", "ana", label="padparadscha", known=KNOWN)
    with pytest.raises(decisions.DecisionError, match="lower case letters"):
        db.record(A, "relabel", "ana", label="Padparadscha Sapphire", known=KNOWN, new_class=True)
    db.record(A, "relabel", "ana", label="padparadscha", known=KNOWN, new_class=True)
    assert db.latest()["label"].tolist() == ["padparadscha"]


@pytest.mark.parametrize(("content", "msg"), [
    (b"", "empty file"),
    (b"image_id,decision,reviewer\n", "a header and no decisions"),
    (b"image_id,decision\n" + A.encode() + b",accept\n", "missing reviewer"),
    (b"image_id,decision,reviewer,colour\n", "unknown column"),
    (b"image_id,decision,reviewer,decided_at\n" + A.encode() + b",accept,ana,yesterday\n",
     "line 2: decided_at 'yesterday' is not a date"),
    (b"image_id,decision,reviewer\n" + A.encode() + b",accept,\xe9ana\n", "not UTF-8"),
    (b"image_id,decision,reviewer\n" + A.encode() + b",accept,ana\n" + D.encode() + b",reject,bo\n",
     "line 3: .*no such image.*nothing was imported"),
])
def test_a_bad_csv_imports_nothing_and_says_where(tmp_path, content, msg):
    f = tmp_path / "d.csv"
    f.write_bytes(content)
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    with pytest.raises(decisions.DecisionError, match=msg):
        db.record_many(decisions.read_csv(f), KNOWN)
    assert db.history().empty


def test_a_good_csv_imports_with_its_dates(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text(f"image_id,decision,label,reviewer,decided_at,note\n{A},relabel,spinel,ana,"
                 f"2026-11-30T10:00:00Z,ok\n{B},reject,,bo,2026-11-30 11:00,\n", encoding="utf-8")
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    assert db.record_many(decisions.read_csv(f), KNOWN) == 2
    h = db.history().set_index("image_id")
    assert h.loc[A, "label"] == "spinel" and pd.isna(h.loc[B, "note"])
    assert pd.Timestamp(h.loc[B, "decided_at"]).hour == 11


def test_accepting_a_photo_several_products_list_keeps_it_once(tmp_path):
    """The same bytes listed by three products under two labels (a label conflict on every
    listing): an accept frees the photo, the first listing stays, the others are copies.
    Found by the browser test: the dataset had one row per listing and validation stopped it."""
    rows = pd.DataFrame({"image_id": [A, A, A, B], "product_id": ["P1", "P2", "P3", "P4"],
                         "label": ["ruby", "spinel", "spinel", "ruby"],
                         "excluded_reason": ["label_conflict"] * 3 + [None],
                         "excluded_detail": ["x"] * 3 + [None],
                         "needs_review": [True] * 3 + [False],
                         "review_reason": ["label_conflict"] * 3 + [None],
                         "is_representative": [True, False, False, True]})
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    db.record(A, "accept", "ana")
    out = decisions.apply(rows, db.latest())
    kept = out[out["excluded_reason"].isna()]
    assert kept["image_id"].tolist() == [A, B] and kept["product_id"].tolist() == ["P1", "P4"]
    assert out.loc[1:2, "excluded_reason"].tolist() == ["duplicate", "duplicate"]
    assert "kept under product P1" in out.at[1, "excluded_detail"]
    db.record(A, "relabel", "bo", label="spinel")
    out = decisions.apply(rows, db.latest())
    assert out.loc[out["excluded_reason"].isna(), "label"].tolist() == ["spinel", "ruby"]
