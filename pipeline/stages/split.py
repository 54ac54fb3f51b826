"""Split stage: leak-free, stratified, stable train/val/test assignment.

*Leak-free*: the unit of assignment is a **split group**: products joined by
shared duplicate clusters (union-find over ``product_id`` and ``dup_cluster``,
excluded duplicates included, since they prove two products show the same
photo). All images of a group land in one split, so neither another angle of
the same stone nor a re-upload of the same photo can sit in train and test.

*Stratified*: groups are assigned in a seeded hash order, each to the split
with the largest deficit against its ratio, counted in images, within its class
(the group's majority label) and, at half weight, over all classes (see
:func:`assign`). The result is deterministic from ``split.seed``.

*Stable across refreshes*: assignments are kept in a ledger
(``<data_dir>/split/ledger.parquet``: group key → split). A refresh keeps every
known group where it was and assigns only new groups, by the same deficit rule
against the current counts, so the ratios stay corrected and a test image never
moves into train. Two groups that a refresh joins (a new duplicate across
products) take the most held-out of their splits (test > val > train), so a
test image still never becomes a train image. A different seed or different
ratios start a new ledger. ``gemcurate split --reset`` does so explicitly.

*Small classes*: a class with fewer than ``split.min_heldout_images`` usable images goes to
train whole (none held out: it is learnt, but the internal val/test cannot score it; the
metrics name it); one with fewer than ``split.min_images`` is left out. Held-aside real gem
photos showed why both exist: the ten-image floor alone dropped Pearl (8–9 distinct photos
once its near copies went) and the model answered none of its photos (2026-12-07,
docs/benchmarks.md).

Rows are kept: images outside the dataset get ``split`` null and a reason
(``no_crop``, ``awaiting_review``, ``class_too_small``).

Example:
    $ gemcurate split --data-dir data
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from pipeline.core import manifest
from pipeline.core.atomic import write_text
from pipeline.core.config import Params, SplitParams
from pipeline.core.errors import UserError
from pipeline.core.groups import UnionFind, unit_hash
from pipeline.core.stageio import Staged
from pipeline.core.stagerun import StageResult, StageRun, stage

logger = logging.getLogger(__name__)

HELD_OUT_ORDER = {"train": 0, "val": 1, "test": 2}
GLOBAL_WEIGHT = 0.5  # weight of the all-classes deficit in assign()
LEDGER_COLUMNS = ["group", "split", "label", "assigned_run"]


def split_groups(df: pd.DataFrame) -> pd.Series:
    """The split group of every row: products linked by shared duplicate clusters.

    The group's key is its smallest ``product_id`` (scoped by site), so it stays
    the same when the group gains images.
    """
    uf = UnionFind()
    prod = "p:" + df["site"].astype(str) + "/" + df["product_id"].astype(str)
    for p_ in prod:
        uf.find(p_)
    if "dup_cluster" in df.columns:
        for p_, c in zip(prod, df["dup_cluster"], strict=True):
            if isinstance(c, str):
                uf.union(p_, "c:" + c)
    roots = prod.map(uf.find)
    key_of_root: dict[str, str] = {}
    for p_, r in zip(prod, roots, strict=True):
        if r not in key_of_root or p_ < key_of_root[r]:
            key_of_root[r] = p_
    return roots.map(key_of_root).str.slice(2)


def eligible(df: pd.DataFrame, p: SplitParams, hold_label_issues: bool = False
             ) -> tuple[pd.Series, pd.Series]:
    """Which rows can enter the dataset, and why the others cannot (new reasons only).

    A photo awaiting review stays out (``split.hold_needs_review``), except one whose only
    doubt is its label (``label_issue``) while ``labels.hold_out`` is false: flagged for a
    person, it trains under the store's label until one decides."""
    reason = pd.Series(pd.NA, index=df.index, dtype="string")
    live = df["excluded_reason"].isna()
    no_crop = live & df["crop_path"].isna()
    reason[no_crop] = "no_crop"
    if p.hold_needs_review:
        waiting = live & ~no_crop & df["needs_review"].fillna(False).astype(bool)
        if not hold_label_issues and "review_reason" in df:
            waiting &= df["review_reason"].astype("string").fillna("") != "label_issue"
        reason[waiting] = "awaiting_review"
    ok = live & reason.isna()
    counts = df.loc[ok, "label"].value_counts()
    small = ok & df["label"].map(counts).fillna(0).lt(p.min_images)
    reason[small] = "class_too_small"
    return ok & ~small, reason


def assign(groups: pd.DataFrame, ratios: dict[str, float], seed: int,
           counts: dict[str, dict[str, int]] | None = None) -> dict[str, str]:
    """Assign new groups by largest deficit, in seeded hash order.

    Each group goes to the split with the largest deficit against its ratio,
    counted in images, for its class (stratification) plus half the deficit over
    all classes. The global term matters on small catalogs: with per-class
    deficits alone, each class rounds to whole groups on its own and the errors
    add up (4 classes × 9 groups: overall shares off by up to 6 %, 3 % of seeds
    beyond 5 %); with it, at most 4.3 % at a per-class cost of 0.5 points
    (300 simulated catalogs; 20 × 35 groups: 0.9 % → 0.2 %).

    Args:
        groups: One row per *new* group: ``group``, ``label``, ``n`` (images).
        ratios: Split → share (sums to 1).
        seed: Hash seed.
        counts: Images already assigned per label per split (kept groups).

    Returns:
        Group → split.
    """
    out: dict[str, str] = {}
    names = list(ratios)
    per_class = {k: {s: int(v.get(s, 0)) for s in names} for k, v in (counts or {}).items()}
    overall = {s: sum(c[s] for c in per_class.values()) for s in names}
    order = sorted(groups.itertuples(index=False), key=lambda r: (unit_hash(seed, r.group), r.group))
    for r in order:
        have = per_class.setdefault(str(r.label), {s: 0 for s in names})
        n = int(r.n)
        t_class, t_all = sum(have.values()) + n, sum(overall.values()) + n

        def deficit(s: str, have=have, t_class=t_class, t_all=t_all) -> tuple[float, int]:
            d = (ratios[s] * t_class - have[s]) + GLOBAL_WEIGHT * (ratios[s] * t_all - overall[s])
            return d, -names.index(s)  # ties go to the earlier split name

        best = max(names, key=deficit)
        out[r.group] = best
        have[best] += n
        overall[best] += n
    return out


class LedgerDamaged(UserError, RuntimeError):
    """The split ledger exists but cannot be read."""


class Ledger(Staged):
    """Group → split assignments that survive refreshes (``<data_dir>/split/ledger.parquet``).

    :func:`run` reads it and hands it the updated assignments (:meth:`stage`);
    ``main()`` writes them (:meth:`save`) with the stage's outputs.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir) / "split"
        self.path = self.dir / "ledger.parquet"
        self.images_path = self.dir / "images.parquet"
        self.meta_path = self.dir / "ledger.json"

    def load(self, p: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The ledger and image assignments, or empty ones for a new seed / new ratios."""
        empty = pd.DataFrame(columns=LEDGER_COLUMNS)
        if not self.path.exists() and not self.meta_path.exists():
            return empty, None
        # the ledger is memory, not a cache: starting over would move images between splits
        # (test into train), so a damaged one stops the stage instead of being ignored
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("seed") != p.seed or meta.get("ratios") != p.ratios():
                logger.warning("split: seed or ratios changed (%s → seed %d, %s): starting a new "
                               "ledger", meta, p.seed, p.ratios())
                return empty, None
            ledger = manifest.read_manifest(self.path)
            images = manifest.read_manifest(self.images_path) if self.images_path.exists() else None
            if not set(LEDGER_COLUMNS) <= set(ledger.columns) or (
                    images is not None and not {"image_id", "split"} <= set(images.columns)):
                raise ValueError("columns missing")
            if not set(ledger["split"].dropna()) <= set(manifest.SPLITS):
                raise ValueError(f"unknown splits {sorted(set(ledger['split'].dropna()))[:5]}")
        except (OSError, ValueError, AttributeError) as exc:
            raise LedgerDamaged(
                f"{self.dir} is unreadable ({type(exc).__name__}: {str(exc)[:200]}): restore it "
                "(`dvc checkout data/split`), or start a new split with `gemcurate split --reset` "
                "(images may change splits)") from None
        return ledger, images

    def write(self, ledger: pd.DataFrame, images: pd.DataFrame, p: SplitParams) -> None:
        """Write a run's assignments (``main()`` calls :meth:`save`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest.write_manifest(ledger.reset_index(drop=True), self.path)
        manifest.write_manifest(images, self.images_path)
        write_text(self.meta_path, json.dumps({"seed": p.seed, "ratios": p.ratios()}, indent=2) + "\n")

    def reset(self) -> None:
        for f in (self.path, self.images_path, self.meta_path):
            f.unlink(missing_ok=True)


def run(df: pd.DataFrame, params: Params, *, ledger: Ledger | None = None
        ) -> tuple[pd.DataFrame, dict]:
    """Split the crop manifest; known groups keep the split ``ledger`` remembers.

    Args:
        df: The crop manifest.
        params: All params (reads ``params.split``).
        ledger: Earlier assignments; given the new ones to save. ``None``: a fresh split.

    Returns:
        The split manifest and a metrics dict (``per_class``: images per class and split).

    Example:
        >>> out, metrics = run(crop_manifest, params, ledger=Ledger("data"))
    """
    known, images = ledger.load(params.split) if ledger is not None else (None, None)
    out, new_ledger, image_splits, metrics = assign_splits(df, params.split, known, images,
                                                           hold_label_issues=params.labels.hold_out)
    if ledger is not None:
        ledger.stage(new_ledger, image_splits, params.split)
    return out, metrics


PARENT_COL = "attr_parent_label"
CLASS_COL = "attr_class_label"


def to_level(df: pd.DataFrame, level: str) -> pd.DataFrame:
    """The manifest with ``label`` at ``level``: ``class`` as scraped, or ``parent``.

    The parent of a class comes from the site adapter's ``label_map`` (the scrape keeps it
    as ``attr_parent_label``); a class without one is its own parent. The class stays in
    ``attr_class_label``. An annotator's relabel is mapped too (the parent of its class).
    """
    if level == "class":
        return df
    if PARENT_COL in df.columns:
        known = df.dropna(subset=[PARENT_COL])
        parent_of = dict(zip(known["label"], known[PARENT_COL], strict=True))
    else:
        parent_of = {}
    df[CLASS_COL] = df["label"].astype("string")
    df["label"] = df["label"].map(lambda v: parent_of.get(v, v)).astype(df["label"].dtype)
    logger.info("split: training on parent labels: %d classes → %d", df[CLASS_COL].nunique(),
                df["label"].nunique())
    return df


# long: the split's steps in order (groups, ledger, stratified assignment, tolerance repair), each
# over the same group table
def assign_splits(df: pd.DataFrame, p: SplitParams, ledger: pd.DataFrame | None = None,
                  images: pd.DataFrame | None = None, hold_label_issues: bool = False
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Assign splits (pure).

    Args:
        df: The crop manifest.
        p: Split parameters.
        ledger: Earlier group assignments (``group``, ``split``, ...); ``None`` = none.
        images: Earlier image assignments (``image_id``, ``split``), to see joined groups.

    Returns:
        The split manifest, the updated ledger, the image assignments, and metrics.
    """
    out = to_level(df.copy(), p.label_level)
    out["split_group"] = split_groups(out)
    ok, reason = eligible(out, p, hold_label_issues)
    new_reason = reason.notna() & out["excluded_reason"].isna()
    out.loc[new_reason, "excluded_reason"] = reason[new_reason]
    out.loc[new_reason, "excluded_detail"] = reason[new_reason].map({
        "no_crop": "no trustworthy crop (see crop_issue)",
        "awaiting_review": "needs an annotator's decision first",
        "class_too_small": f"class has fewer than {p.min_images} usable images"})
    ratios = p.ratios()
    ledger = (pd.DataFrame(columns=LEDGER_COLUMNS) if ledger is None else ledger).copy()
    known = dict(zip(ledger["group"], ledger["split"], strict=True))
    run_id = int(ledger["assigned_run"].max()) + 1 if len(ledger) else 1
    data = out.loc[ok, ["image_id", "label", "split_group"]]
    # a group's label: its most common label (ties: alphabetical)
    g = data.groupby("split_group")
    glabel = g["label"].agg(lambda s: s.value_counts().sort_index().idxmax())
    gsize = g.size()
    groups = pd.DataFrame({"group": glabel.index, "label": glabel.values, "n": gsize.values})
    # a group keeps its split; groups a refresh joined (a new duplicate across products)
    # take the most held-out split any of their images had, so test never becomes train
    image_prev = ({} if images is None or not len(ledger) else
                  dict(zip(images["image_id"], images["split"], strict=True)))
    split_of: dict[str, str] = {}
    joined = 0
    for grp, imgs in data.groupby("split_group")["image_id"]:
        olds = {image_prev[i] for i in imgs if i in image_prev}
        if grp in known:
            olds.add(known[grp])
        if olds:
            split_of[grp] = max(olds, key=HELD_OUT_ORDER.__getitem__)
            joined += len(olds) > 1
    kept = groups["group"].isin(split_of.keys())
    counts: dict[str, dict[str, int]] = {}
    for r in groups[kept].itertuples(index=False):
        s = split_of[r.group]
        if s not in ratios:  # a ratio set to 0 since: reassign
            continue
        counts.setdefault(r.label, {k: 0 for k in ratios})[s] += int(r.n)
    split_of = {k: v for k, v in split_of.items() if v in ratios}
    fresh = groups[~groups["group"].isin(split_of.keys())]
    # a class too small to hold any photos out trains whole (its groups kept from earlier runs
    # keep their split: a test photo never becomes a train photo)
    small = p.train_only(groups.groupby("label")["n"].sum())
    whole = fresh["label"].isin(small)
    split_of.update(dict.fromkeys(fresh.loc[whole, "group"], "train"))
    split_of.update(assign(fresh[~whole], ratios, p.seed, counts))
    out["split"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out.loc[ok, "split"] = out.loc[ok, "split_group"].map(split_of)
    out["image_path"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out.loc[ok, "image_path"] = "crops/" + out.loc[ok, "crop_path"].astype(str)
    # the ledger: every group ever assigned (groups absent now stay, for a later return)
    now = groups.assign(split=groups["group"].map(split_of))
    old = ledger[~ledger["group"].isin(now["group"])]
    now["assigned_run"] = now["group"].map(dict(zip(ledger["group"], ledger["assigned_run"],
                                                    strict=True))).fillna(run_id).astype("int64")
    new_ledger = pd.concat([old[LEDGER_COLUMNS], now[LEDGER_COLUMNS]], ignore_index=True)
    new_ledger = new_ledger.astype({"group": "string", "split": "string", "label": "string",
                                    "assigned_run": "int64"}).sort_values("group", ignore_index=True)
    image_splits = out.loc[ok, ["image_id", "split"]].astype("string").reset_index(drop=True)
    table = class_table(out)
    n = int(ok.sum())
    metrics = {
        "images": n, "groups": len(groups),
        "new_groups": len(fresh), "kept_groups": int(kept.sum()), "joined_groups": joined,
        "classes": int(groups["label"].nunique()),
        "train_only_classes": sorted(map(str, small)),
        "excluded": {str(k): int(v) for k, v in reason[reason.notna()].value_counts().items()},
        "share": {s: round(float((out.loc[ok, "split"] == s).sum()) / max(1, n), 4) for s in ratios},
        "per_class": table.to_dict(orient="index"),
    }
    return out, new_ledger, image_splits, metrics


def class_table(df: pd.DataFrame) -> pd.DataFrame:
    """Images per class per split (rows: labels, columns: splits present, plus total)."""
    live = df[df["split"].notna()]
    t = pd.crosstab(live["label"], live["split"]).reindex(
        columns=[s for s in manifest.SPLITS if s in set(live["split"])], fill_value=0)
    t["total"] = t.sum(axis=1)
    return t.astype(int)


@stage("split", reads="crop")
def main(ctx: StageRun, df: pd.DataFrame, reset: bool = False) -> StageResult:
    """Read ``crop.parquet``, split, write ``split.parquet``, the ledger and ``metrics/split.json``.

    ``reset``: forget earlier assignments (a new split; breaks stability)."""
    t0 = time.perf_counter()
    led = Ledger(ctx.io.data_dir)
    if reset:
        led.reset()
    out, metrics = run(df, ctx.params, ledger=led)
    metrics["seconds"] = round(time.perf_counter() - t0, 3)
    table = pd.DataFrame.from_dict(metrics["per_class"], orient="index").rename_axis("label")
    csv = ctx.io.data_dir / "metrics" / "split_classes.csv"
    return StageResult(metrics, out, state=(led,),
                       then=(lambda _: write_text(csv, table.to_csv()),),
                       returned={k: v for k, v in metrics.items() if k != "per_class"},
                       summary=f"split: {metrics['images']} images in {metrics['groups']} groups, "
                               f"shares {metrics['share']}")
