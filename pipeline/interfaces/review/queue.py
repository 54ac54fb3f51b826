"""What annotators see: the review queue over the latest stage manifest and the decisions.

The queue holds the images the pipeline flagged (``needs_review``) that have no decision
in force, plus those whose latest decision is "needs another look" (``revisit``) or was
undone. Images are grouped by reason (``review_reason`` may hold several, ``;``-joined)
and sorted by how close their score is to its threshold: the most doubtful first.

The manifest is read once per change of the file (a pipeline run replaces it
atomically); the decisions are read on every request (other annotators write them).

Example:
    >>> data = ReviewData(params, Path("data"))
    >>> q = data.queue(reason="hand")
    >>> q.items.head()
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import decisions, manifest
from pipeline.core.blobstore import sha_of_relpath
from pipeline.core.config import Params
from pipeline.core.stageio import StageIO

logger = logging.getLogger(__name__)

STAGES = ("crop", "labels", "filter", "dedupe")  # the latest manifest that exists wins
REJECT_REASONS = ("certificate", "hand", "duplicate", "blurry", "wrong_product", "other")


@dataclass(frozen=True)
class Queue:
    items: pd.DataFrame        # the filtered queue, in order (image_id, label, reasons, closeness...)
    counts: dict[str, int]     # left per reason (unfiltered)
    done: int                  # flagged images with a decision in force
    left: int                  # the whole queue (unfiltered)
    labels: list[str]


class ReviewData:
    """The project's review state: manifest, decisions, votes.

    Args:
        params: The project's params (thresholds, double review, the review DB).
        data_dir: The data folder.
        app_db: The app's accounts and votes (:class:`pipeline.interfaces.review.accounts.AppDB`).
    """

    def __init__(self, params: Params, data_dir: Path, app_db=None) -> None:
        self.params = params
        self.data_dir = Path(data_dir)
        self.io = StageIO.of(params, self.data_dir)  # the store's local folder (or mirror)
        self.store_root = self.io.store_root
        self.crops_dir = self.data_dir / "crops"
        self.db = decisions.Decisions(decisions.connect(
            decisions.db_url(params.data.review_db, self.data_dir)))
        self.app_db = app_db
        self._lock = threading.Lock()
        self._cached: tuple | None = None
        self._top_cache: tuple | None = None
        from pipeline.stages.filter.checks import REGISTRY

        self.checks = params.filter.enabled_checks(REGISTRY)

    # ------------------------------------------------------------------ manifest
    def manifest_file(self) -> Path | None:
        for stage in STAGES:
            path = manifest.manifest_path(self.data_dir, stage)
            if path.exists():
                return path
        return None

    def manifest(self) -> pd.DataFrame:
        """The latest stage manifest, indexed by ``image_id``, with ``reasons`` and ``closeness``."""
        path = self.manifest_file()
        if path is None:
            return pd.DataFrame(columns=["label", "needs_review", "reasons", "closeness"]).rename_axis(
                "image_id")
        key = (str(path), path.stat().st_mtime_ns)
        with self._lock:
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, self._prepare(manifest.read_manifest(path)))
            return self._cached[1]

    def _prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.drop_duplicates("image_id").set_index("image_id", drop=False)
        df.index.name = None
        rr = df["review_reason"].astype("string").fillna("") if "review_reason" in df else \
            pd.Series("", index=df.index)
        df["reasons"] = [tuple(x for x in r.split(";") if x) for r in rr]
        df["closeness"] = [self._closeness(row, reasons) for row, reasons in
                           zip(df.to_dict("records"), df["reasons"], strict=True)]
        nr = df["needs_review"] if "needs_review" in df else pd.Series(False, index=df.index)
        touched = df["decision"].notna() if "decision" in df else pd.Series(False, index=df.index)
        df["flagged"] = nr.fillna(False).astype(bool) | touched.astype(bool)
        return df

    def labels(self) -> list[str]:
        """The project's classes (those of the manifest, relabels included)."""
        df = self.manifest()
        return sorted(df["label"].dropna().astype(str).unique()) if len(df) else []

    def reason_score(self, row: dict, reason: str) -> tuple[float | None, float | None]:
        """``(score, threshold)`` behind a review reason (None where it has none)."""
        if reason in self.checks:
            s = row.get(manifest.score_col(reason))
            return (None if s is None or pd.isna(s) else float(s)), self.checks[reason].threshold
        if reason.startswith("crop_"):
            s = row.get("crop_confidence")
            return (None if s is None or pd.isna(s) else float(s)), self.params.crop.min_confidence
        if reason == "label_issue":  # the probability of its own label: lowest (surest) first
            s = row.get("label_quality")
            return (None if s is None or pd.isna(s) else float(s)), 0.0
        return None, None

    def _closeness(self, row: dict, reasons: tuple[str, ...]) -> float:
        best = np.inf
        for r in reasons:
            score, thr = self.reason_score(row, r)
            best = min(best, 0.0 if score is None or thr is None else abs(score - thr))
        return float(best)

    def needs_double(self, reasons: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(r, pat) for r in reasons for pat in self.params.review.double_review)

    # ------------------------------------------------------------------ queue
    def queue(self, reason: str | None = None, label: str | None = None, user: str | None = None,
              role: str = "annotator") -> Queue:
        df = self.manifest()
        flagged = df[df["flagged"]] if len(df) else df
        latest = self.db.latest_rows().set_index("image_id") if len(flagged) else pd.DataFrame()
        kind = flagged.index.map(latest["decision"]) if len(latest) else pd.Series(None, index=flagged.index)
        kind = pd.Series(np.asarray(kind, dtype=object), index=flagged.index)
        in_force = kind.isin(decisions.IN_FORCE)
        q = flagged[~in_force].copy()
        q["revisit"] = (kind[~in_force] == "revisit").to_numpy(dtype=bool)
        q["decision_id"] = (pd.Series(q.index.map(latest["id"]), index=q.index).fillna(0).astype("int64")
                            if len(latest) else 0)
        votes = self.app_db.open_vote_map() if self.app_db is not None else {}
        state = []
        for iid, reasons in zip(q.index, q["reasons"], strict=True):
            vs = votes.get(iid, [])
            if not self.needs_double(reasons) or not vs:
                state.append("open")
            elif len({(v["decision"], v["label"]) for v in vs}) > 1:
                state.append("disputed")
            elif user is not None and any(v["reviewer"] == user for v in vs):
                state.append("voted")
            else:
                state.append("second")
        q["state"] = state
        visible = q["state"].isin(("open", "second", "disputed") if role == "lead" else ("open", "second"))
        q = q[visible]
        counts: dict[str, int] = {}
        for reasons in q["reasons"]:
            for r in reasons or ("(none)",):
                counts[r] = counts.get(r, 0) + 1
        if int((q["state"] == "disputed").sum()):
            counts["disputed"] = int((q["state"] == "disputed").sum())
        left = len(q)
        if reason == "disputed":
            q = q[q["state"] == "disputed"]
        elif reason:
            q = q[[reason in rs for rs in q["reasons"]]]
        if label:
            q = q[q["label"] == label]
        q = q.sort_values(["revisit", "closeness", "image_id"], ascending=[False, True, True],
                          kind="stable")
        labels = self.labels()
        return Queue(q, dict(sorted(counts.items(), key=lambda kv: -kv[1])),
                     int(in_force.sum()), left, labels)

    def row(self, image_id: str) -> dict | None:
        """The manifest row of ``image_id`` (a validated id), or None."""
        if not decisions.IMAGE_ID_RE.fullmatch(image_id or ""):
            return None
        df = self.manifest()
        if image_id not in df.index:
            return None
        return df.loc[image_id].to_dict()

    def cluster(self, row: dict, limit: int = 12) -> list[dict]:
        """The other members of the image's duplicate cluster."""
        df = self.manifest()
        c = row.get("dup_cluster")
        if c is None or pd.isna(c) or "dup_cluster" not in df:
            return []
        others = df[(df["dup_cluster"] == c) & (df.index != row["image_id"])].head(limit)
        return others[[x for x in ("image_id", "label", "excluded_reason", "product_id") if x in others]
                      ].to_dict("records")

    def model_top(self, row: dict) -> tuple[list[tuple[str, float]], str | None]:
        """The model's most likely classes for the image, with probabilities, and which
        model said so: the trained model's (``data/evaluate/review_top.parquet``, written by
        evaluate) when it scored the image, else the labels stage's out-of-fold probe."""
        trained = self._trained_top().get(row.get("image_id"))
        for text, source in ((trained, "trained model"), (row.get("label_top"), "out-of-fold probe")):
            if isinstance(text, str):
                try:
                    top = [(str(c), float(p)) for c, p in json.loads(text)][:3]
                except (ValueError, TypeError):
                    continue  # a damaged cell: the next source
                if top:
                    return top, source
        return [], None

    def _trained_top(self) -> dict[str, str]:
        path = self.data_dir / "evaluate" / "review_top.parquet"
        if not path.is_file():
            return {}
        key = path.stat().st_mtime_ns
        if self._top_cache is None or self._top_cache[0] != key:
            try:
                t = pd.read_parquet(path, columns=["image_id", "top"])
                self._top_cache = (key, dict(zip(t["image_id"].astype(str), t["top"], strict=True)))
            except (OSError, ValueError, KeyError) as exc:  # a file on disk is input
                logger.warning("%s unreadable (%s): the probe's classes are shown", path, exc)
                self._top_cache = (key, {})
        return self._top_cache[1]

    def suggestions(self, row: dict, n: int) -> list[str]:
        """Classes for keys 1-9: the model's top classes (other than the label), the
        cluster's other labels, the store's label, then the catalog's classes by frequency."""
        out: list[str] = []
        top = [c for c, _ in self.model_top(row)[0] if c != row.get("label")]
        known = set(self.labels())
        for x in [*(c for c in top if c in known), *(m["label"] for m in self.cluster(row)),
                  row.get("label_original"), row.get("label")]:
            if isinstance(x, str) and x not in out:
                out.append(x)
        df = self.manifest()
        for x in df["label"].value_counts().index if len(df) else []:
            if x not in out:
                out.append(str(x))
        return out[:n]

    # ------------------------------------------------------------------ files
    def image_file(self, image_id: str) -> Path | None:
        """The stored photo of ``image_id``: the path comes from the manifest and must be
        the store path named by that very id (a hostile manifest cannot point elsewhere)."""
        row = self.row(image_id)
        rel = row.get("path") if row else None
        if not isinstance(rel, str):
            return None
        try:
            if sha_of_relpath(rel) != image_id:
                return None
        except ValueError:
            return None
        f = self.store_root / rel
        if not f.is_file() and self.io.store_url:  # a shared store: fetch it (verified) once
            self.io.store().fetch([rel])
        return f if f.is_file() else None

    def crop_file(self, image_id: str) -> Path | None:
        row = self.row(image_id)
        rel = row.get("crop_path") if row else None
        if not isinstance(rel, str) or not rel.startswith(f"{image_id[:2]}/{image_id}."):
            return None
        f = self.crops_dir / rel
        return f if f.is_file() and "/" not in rel[3:] else None
