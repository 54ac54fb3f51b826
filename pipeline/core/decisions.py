"""Annotator decisions: a person's word overrides the machine, for good.

A decision is keyed by ``image_id`` (the sha256 of the bytes), so it follows the
photo across refreshes, URLs and products. The table keeps every decision ever
made (who, when, why); the latest one per image wins. Every curation run reads
the table and applies it after its own checks:

* ``accept``: the image is in, whatever the checks say (flags stay visible,
  ``excluded_reason`` and ``needs_review`` are cleared);
* ``reject``: the image is out (``excluded_reason = rejected_by_annotator``);
* ``relabel``: the image's ``label`` becomes the given one (the store's label
  stays in ``label_original``); dedupe applies relabels before it looks for
  label conflicts;
* ``revisit`` ("needs another look") and ``revoke`` (an undo that leaves no earlier
  decision): no decision is in force, the machine's verdict stands; ``revisit`` keeps
  the image at the front of the review queue.

Each row records the decision in force when it was made (``supersedes``: the "before";
the row itself is the "after"). A unique index on ``(image_id, supersedes)`` makes the
version check race-free: two people deciding the same image from the same state cannot
both be written, the second gets :class:`DecisionConflict` with the first decision.

The review web app (``pipeline/interfaces/review``) writes this table; ``gemcurate decide`` and
``gemcurate decisions import`` write it from the command line.

Example:
    >>> db = Decisions(connect(review_url("data")))
    >>> db.record("3fa1…", "relabel", reviewer="ana", label="ruby", note="not a spinel")
    >>> df = apply(df, db.latest())
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pipeline.core import manifest
from pipeline.core.db import make_engine, sqlite_url
from pipeline.core.errors import UserError

logger = logging.getLogger(__name__)

KINDS = ("accept", "reject", "relabel", "revisit", "revoke")
IN_FORCE = ("accept", "reject", "relabel")  # the kinds the pipeline applies
REJECTED = "rejected_by_annotator"
# download failures cannot be accepted into a dataset: there is nothing to train on
UNACCEPTABLE = ("http_error", "not_an_image", "corrupt", "too_large_bytes", "too_many_pixels",
                "unsupported_format", "disallowed_by_robots", "removed_from_catalog", "undecodable",
                "unmapped_label")

meta = sa.MetaData()
decisions_table = sa.Table(
    "decisions", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(64), nullable=False, index=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("label", sa.String(128)),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.String(128)),
    sa.Column("note", sa.Text),
    # id of the decision in force when this one was made; 0: none (NULL: rows of before it existed)
    sa.Column("supersedes", sa.Integer),
    sa.Index("ux_decisions_image_supersedes", "image_id", "supersedes", unique=True),
)

COLUMNS = ["image_id", "decision", "label", "reviewer", "decided_at", "reason", "note"]


class DecisionError(UserError, ValueError):
    """A decision is malformed (unknown kind, relabel without label, ...)."""


class DecisionConflict(DecisionError):
    """Someone decided the image since the caller looked; ``current`` is that decision."""

    def __init__(self, message: str, current: dict | None) -> None:
        super().__init__(message)
        self.current = current


def review_url(data_dir: str | Path) -> str:
    """Default decisions database: ``sqlite:///<data_dir>/state/reviews.sqlite``."""
    return sqlite_url(Path(data_dir) / "state" / "reviews.sqlite")


def db_url(review_db: str | None, data_dir: str | Path) -> str:
    """The decisions database of a project: ``data.review_db`` when set, else the data dir's
    SQLite file (:func:`review_url`). The one place this is worked out."""
    return review_db or review_url(data_dir)


def open_db(review_db: str | None, data_dir: str | Path) -> Decisions:
    """The decisions table of a project (``data.review_db``, else the data dir's file)."""
    return Decisions(connect(db_url(review_db, data_dir)))


def known_of_project(db: Decisions, data_dir: str | Path) -> Known:
    """What a decision may name in this project: the raw manifest's images, and its classes
    plus those earlier relabels created.

    Raises:
        DecisionError: Nothing scraped yet.
    """
    raw = manifest.manifest_path(data_dir, "raw")
    if not raw.exists():
        raise DecisionError(f"{raw} missing: decisions name images of a scrape; scrape first")
    known = Known.of_manifest(manifest.read_manifest(raw))
    earlier = set(db.history()["label"].dropna())
    return Known(known.image_ids, known.labels | earlier)


def connect(url: str) -> sa.Engine:
    """Open the decisions database at ``url`` and create (or bring up to date) its table."""
    engine = make_engine(url)
    meta.create_all(engine)  # only the decisions table: the crawl state lives elsewhere
    cols = {c["name"] for c in sa.inspect(engine).get_columns("decisions")}
    if "supersedes" not in cols:  # a table from before the review app: add the column, keep rows
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE decisions ADD COLUMN supersedes INTEGER"))
        decisions_table.indexes.copy().pop().create(engine, checkfirst=True)
    return engine


CSV_REQUIRED = ("image_id", "decision", "reviewer")
CSV_OPTIONAL = ("label", "decided_at", "reason", "note")
NEW_CLASS_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
IMAGE_ID_RE = re.compile(r"[0-9a-f]{64}")
LIMITS = {"reviewer": 64, "reason": 128, "note": 2000, "label": 128}


@dataclass(frozen=True)
class Known:
    """What a decision may name: the project's image ids and class labels."""

    image_ids: frozenset[str]
    labels: frozenset[str]

    @classmethod
    def of_manifest(cls, df: pd.DataFrame) -> Known:
        labels = set(df["label"].dropna().astype(str))
        if "label_original" in df.columns:
            labels |= set(df["label_original"].dropna().astype(str))
        return cls(frozenset(df["image_id"].astype(str)), frozenset(labels))


def validate(decision: str, label: str | None, reviewer: str, image_id: str,
             known: Known | None = None, new_class: bool = False, reason: str | None = None,
             note: str | None = None) -> None:
    """Refuse a malformed decision, naming the field.

    Args:
        known: The project's ids and labels; an unknown image id is refused, and a relabel
            must name a known class unless ``new_class`` (then a slug, ``[a-z0-9_-]``).
    """
    if not isinstance(image_id, str) or not IMAGE_ID_RE.fullmatch(image_id):
        raise DecisionError(f"image_id {str(image_id)[:80]!r}: not an image id (64 hex digits, "
                            "the sha256 gemcurate gives every image)")
    if decision not in KINDS:
        raise DecisionError(f"decision {decision!r}: expected one of {', '.join(KINDS)}")
    if decision == "relabel" and not label:
        raise DecisionError(f"{image_id}: relabel needs a label")
    if decision != "relabel" and label:
        raise DecisionError(f"{image_id}: only relabel takes a label")
    if not reviewer or not reviewer.strip():
        raise DecisionError(f"{image_id}: who decided? (reviewer is required)")
    for name, value in (("reviewer", reviewer), ("label", label), ("reason", reason), ("note", note)):
        if value is not None and len(value) > LIMITS[name]:
            raise DecisionError(f"{image_id}: {name} is longer than {LIMITS[name]} characters")
    for name, value in (("reviewer", reviewer.strip()), ("label", label)):
        why = manifest.text_problem(value) if value else None
        if why:
            raise DecisionError(f"{image_id}: {name} {value[:60]!r} {why}")
    if known is not None:
        if image_id not in known.image_ids:
            raise DecisionError(f"{image_id}: no such image in this project's manifest "
                                "(decisions are refused for ids gemcurate has not seen)")
        if label and label not in known.labels:
            if not new_class:
                close = difflib.get_close_matches(label, sorted(known.labels), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DecisionError(f"{image_id}: {label!r} is not a class of this project{hint}; "
                                    "pass --new-class to create it")
            if not NEW_CLASS_RE.fullmatch(label):
                raise DecisionError(f"{image_id}: a new class name is lower case letters, digits, "
                                    f"- and _ (got {label[:60]!r})")


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Decision rows of a CSV file, validated as a whole before anything is written.

    Raises:
        DecisionError: Naming the line: not UTF-8, no header or no rows, unknown or
            missing columns, a date that does not parse.
    """
    import csv
    import io

    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DecisionError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DecisionError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if not header:
        raise DecisionError(f"{path}: empty file; expected a header "
                            f"{','.join(CSV_REQUIRED + CSV_OPTIONAL)}")
    unknown = [h for h in header if h not in CSV_REQUIRED + CSV_OPTIONAL]
    missing = [h for h in CSV_REQUIRED if h not in header]
    if unknown or missing:
        raise DecisionError(f"{path}: header {','.join(header)[:200]!r}: "
                            + (f"unknown column(s) {', '.join(unknown)}; " if unknown else "")
                            + (f"missing {', '.join(missing)}; " if missing else "")
                            + f"expected {','.join(CSV_REQUIRED)}[,{','.join(CSV_OPTIONAL)}]")
    rows = []
    records = iter(reader)
    while True:
        try:
            r = next(records)
        except StopIteration:
            break
        except csv.Error as exc:  # a field over the csv module's limit, a NUL byte …
            raise DecisionError(f"{path}, line {reader.line_num + 1}: not a readable CSV row "
                                f"({exc})") from None
        line = reader.line_num
        if None in r or any(v is None for v in r.values()):
            raise DecisionError(f"{path}, line {line}: {len(header)} fields expected")
        at = (r.get("decided_at") or "").strip()
        if at:
            try:
                r["decided_at"] = pd.Timestamp(at).tz_localize("UTC") if pd.Timestamp(at).tzinfo is None \
                    else pd.Timestamp(at).tz_convert("UTC")
            except (ValueError, TypeError):
                raise DecisionError(f"{path}, line {line}: decided_at {at[:40]!r} is not a date "
                                    "(use ISO 8601, e.g. 2026-12-01T10:30:00Z)") from None
            if pd.isna(r["decided_at"]):
                raise DecisionError(f"{path}, line {line}: decided_at {at[:40]!r} is not a date")
        rows.append({k: (v if v != "" else None) for k, v in r.items()} | {"_line": line})
    if not rows:
        raise DecisionError(f"{path}: a header and no decisions")
    return rows


class Decisions:
    """The decisions table of one database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def record(self, image_id: str, decision: str, reviewer: str, label: str | None = None,
               reason: str | None = None, note: str | None = None,
               decided_at: datetime | None = None, known: Known | None = None,
               new_class: bool = False, expect: int | None = None) -> int:
        """Append one decision (earlier ones are kept as history); see :func:`validate`.

        Args:
            expect: The id of the decision the caller saw in force (0: none). When another
                is in force now, nothing is written and :class:`DecisionConflict` names it.
                ``None``: whatever is in force (the command line).

        Returns:
            The new row's id.
        """
        validate(decision, label, reviewer, image_id, known, new_class, reason, note)
        t = decisions_table
        try:
            with self.engine.begin() as conn:
                before = conn.execute(sa.select(sa.func.max(t.c.id)).where(t.c.image_id == image_id)
                                      ).scalar_one() or 0
                if expect is not None and before != expect:
                    raise self._conflict(conn, image_id, before)
                res = conn.execute(t.insert().values(
                    image_id=image_id, decision=decision, label=label, reviewer=reviewer.strip(),
                    decided_at=decided_at or datetime.now(UTC), reason=reason, note=note,
                    supersedes=before))
                new_id = int(res.inserted_primary_key[0])
            self._settle()
            return new_id
        except sa.exc.IntegrityError:  # the same state decided twice at the same moment
            with self.engine.connect() as conn:
                now = conn.execute(sa.select(sa.func.max(t.c.id)).where(t.c.image_id == image_id)
                                   ).scalar_one() or 0
                raise self._conflict(conn, image_id, now) from None

    def _settle(self) -> None:
        """Fold SQLite's write-ahead log into the file now.

        The file is a DVC dependency of the curation stages: a long-running writer (the
        review app) would otherwise leave its decisions in ``-wal`` where DVC does not
        look, and ``dvc repro`` would call the stages up to date.
        """
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    @staticmethod
    def _conflict(conn, image_id: str, current_id: int) -> DecisionConflict:
        row = conn.execute(sa.select(decisions_table).where(decisions_table.c.id == current_id)
                           ).mappings().first()
        current = dict(row) if row else None
        who = f"{current['decision']} by {current['reviewer']}" if current else "a decision"
        return DecisionConflict(f"{image_id[:12]}…: {who} was recorded since you opened the image; "
                                "look again and decide", current)

    def current(self, image_id: str) -> dict | None:
        """The latest row for ``image_id`` (any kind), or None."""
        t = decisions_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.image_id == image_id).order_by(t.c.id.desc())
                               .limit(1)).mappings().first()
        return dict(row) if row else None

    def history_of(self, image_id: str) -> list[dict]:
        """Every decision on ``image_id``, oldest first."""
        t = decisions_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.image_id == image_id).order_by(t.c.id)).mappings()
            return [dict(r) for r in rows]

    def record_many(self, rows: list[dict[str, Any]], known: Known | None = None,
                    new_class: bool = False) -> int:
        """Append many decisions in one transaction, all validated first: all or nothing.

        The history has one order, the order decisions were recorded in, and the latest
        is in force: a row whose ``decided_at`` is older than the decision it would
        supersede (in the database, or earlier in ``rows``) is refused, naming its line,
        rather than put in force out of date order.
        """
        clean = []
        given_at: list[datetime | None] = []
        for r in rows:
            label = r.get("label") or None
            try:
                validate(r.get("decision") or "", label, r.get("reviewer") or "",
                         r.get("image_id") or "", known, new_class, r.get("reason"), r.get("note"))
            except DecisionError as exc:
                where = f"line {r['_line']}: " if "_line" in r else ""
                raise DecisionError(f"{where}{exc}; nothing was imported") from None
            at = r.get("decided_at")
            at = _utc(pd.Timestamp(at).to_pydatetime()) if at not in (None, "") else None
            given_at.append(at)
            at = at or datetime.now(UTC)
            clean.append({"_line": r.get("_line"), "image_id": r["image_id"],
                          "decision": r["decision"], "label": label,
                          "reviewer": r["reviewer"].strip(), "decided_at": at,
                          "reason": r.get("reason") or None, "note": r.get("note") or None})
        t = decisions_table
        with self.engine.begin() as conn:
            ids = {iid for iid in {r["image_id"] for r in clean}}
            last: dict[str, int] = {}
            last_at: dict[str, tuple[datetime, str]] = {}
            if ids:
                q = sa.select(t.c.image_id, sa.func.max(t.c.id)).where(t.c.image_id.in_(ids)).group_by(
                    t.c.image_id)
                last = {a: int(b) for a, b in conn.execute(q)}
                if last:
                    q = sa.select(t.c.image_id, t.c.decided_at, t.c.decision, t.c.id).where(
                        t.c.id.in_(list(last.values())))
                    last_at = {a: (_utc(at), f"#{i} {d}") for a, at, d, i in conn.execute(q)}
            for r, given in zip(clean, given_at, strict=True):  # each supersedes the one before
                line = r.pop("_line")
                before = last_at.get(r["image_id"])
                if given is not None and before is not None and given < before[0]:
                    where = f"line {line}: " if line else ""
                    raise DecisionError(
                        f"{where}decided_at {given.isoformat()} is older than the decision it "
                        f"would supersede ({before[1]} of {before[0].isoformat()}): the latest "
                        "recorded decision is the one in force, so an older one cannot follow it. "
                        "Import decisions in date order, or leave decided_at empty; nothing was "
                        "imported")
                r["supersedes"] = last.get(r["image_id"], 0)
                last[r["image_id"]] = int(conn.execute(t.insert().values(**r)).inserted_primary_key[0])
                last_at[r["image_id"]] = (_utc(r["decided_at"]), f"line {line} {r['decision']}")
        self._settle()
        return len(clean)

    def history(self) -> pd.DataFrame:
        """Every decision, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(decisions_table).order_by(decisions_table.c.id)).mappings()
            df = pd.DataFrame([dict(r) for r in rows], columns=["id", *COLUMNS, "supersedes"])
        return df

    def latest(self) -> pd.DataFrame:
        """The decision in force for each image: the most recent one, when it is accept,
        reject or relabel (a ``revisit`` or ``revoke`` leaves none in force)."""
        df = self.history()
        if df.empty:
            return df[COLUMNS]
        last = df.drop_duplicates("image_id", keep="last")
        return last[last["decision"].isin(IN_FORCE)][COLUMNS].reset_index(drop=True)

    def latest_rows(self) -> pd.DataFrame:
        """The most recent row per image, any kind, with its ``id`` (the review queue's view)."""
        t = decisions_table
        newest = sa.select(sa.func.max(t.c.id)).group_by(t.c.image_id).scalar_subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.id.in_(newest))).mappings()
            return pd.DataFrame([dict(r) for r in rows], columns=["id", *COLUMNS, "supersedes"])


def _utc(at: datetime) -> datetime:
    """A datetime in UTC (SQLite gives back naive ones: they were written in UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def load_latest(url: str | None, data_dir: str | Path) -> pd.DataFrame:
    """The decisions in force, from ``url`` (default: the data dir's reviews DB)."""
    engine = connect(db_url(url, data_dir))
    try:
        return Decisions(engine).latest()
    finally:
        # close now: SQLite folds its WAL back into the file on the last close, so the
        # file (a DVC dependency) is settled before DVC hashes it
        engine.dispose()


def apply_labels(df: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """Apply relabel decisions only (dedupe needs true labels to find conflicts)."""
    out = df.copy()
    if "label_original" not in out.columns:
        out["label_original"] = out["label"]
    relabel = latest[latest["decision"] == "relabel"].set_index("image_id")["label"]
    if len(relabel):
        hit = out["image_id"].isin(relabel.index)
        out.loc[hit, "label"] = out.loc[hit, "image_id"].map(relabel)
    # a later accept/reject replaces a relabel: back to the store's label
    other = latest[latest["decision"] != "relabel"]["image_id"]
    back = out["image_id"].isin(other) & (out["label"] != out["label_original"])
    out.loc[back, "label"] = out.loc[back, "label_original"]
    return out


def apply(df: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """Apply every decision in force to a curated manifest.

    Adds ``decision``, ``decided_by`` and ``decided_at``; see the module doc for
    what each kind does. Decisions for images not in ``df`` are ignored.
    """
    out = apply_labels(df, latest)
    by_id = latest.set_index("image_id")
    dec = out["image_id"].map(by_id["decision"]) if len(by_id) else pd.Series(None, index=out.index)
    out["decision"] = dec.astype("string")
    out["decided_by"] = (out["image_id"].map(by_id["reviewer"]) if len(by_id)
                         else pd.Series(None, index=out.index)).astype("string")
    out["decided_at"] = pd.to_datetime(
        out["image_id"].map(by_id["decided_at"]) if len(by_id) else pd.Series(None, index=out.index),
        utc=True)
    reason = out["excluded_reason"].astype("string")
    accept = (out["decision"] == "accept").fillna(False) & ~reason.isin(UNACCEPTABLE).fillna(False)
    reject = (out["decision"] == "reject").fillna(False)
    relabel = (out["decision"] == "relabel").fillna(False)
    out.loc[accept, "excluded_reason"] = None
    out.loc[accept, "excluded_detail"] = None
    # a relabel answers label conflicts; other machine flags still stand
    conflict = relabel & (reason == "label_conflict").fillna(False)
    out.loc[conflict, "excluded_reason"] = None
    out.loc[conflict, "excluded_detail"] = None
    out.loc[reject, "excluded_reason"] = REJECTED
    out.loc[reject, "excluded_detail"] = "rejected by " + out.loc[reject, "decided_by"].fillna("?")
    # one photo listed by several products is one image: a person's accept (or relabel) of a
    # label conflict frees every listing of it, the first one stays, the others are copies
    # (the review app shows the first listing's label, which an accept confirms)
    kept = out["excluded_reason"].isna() & (accept | relabel)
    again = kept & out["image_id"].where(kept).duplicated(keep="first")
    if again.any():
        first = out[kept].drop_duplicates("image_id").set_index("image_id")["product_id"]
        out.loc[again, "excluded_reason"] = "duplicate"
        out.loc[again, "excluded_detail"] = ("the same photo is kept under product "
                                             + out.loc[again, "image_id"].map(first).astype(str))
        if "is_representative" in out.columns:
            out.loc[again, "is_representative"] = False
    decided = accept | reject | relabel
    if "needs_review" in out.columns:
        out.loc[decided, "needs_review"] = False
        out.loc[decided, "review_reason"] = None
    n = int(decided.sum())
    if n:
        logger.info("applied %d annotator decision(s): %d accept, %d reject, %d relabel", n,
                    int(accept.sum()), int(reject.sum()), int(relabel.sum()))
    return out
