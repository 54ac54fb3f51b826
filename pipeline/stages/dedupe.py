"""Dedupe stage: exact and near-duplicate photos, clustered, one representative each.

1. **Fingerprint** every stored image once (:mod:`pipeline.core.hashing`); the
   fingerprints are cached by ``image_id`` in ``<data_dir>/dedupe/hashes.parquet``,
   so a refresh fingerprints only new images.
2. **Exact duplicates**: equal bytes (the same ``image_id``) or equal decoded
   pixels.
3. **Near-duplicate candidates**: pairs within ``phash_radius`` bits of pHash
   *or* ``dhash_radius`` bits of dHash, found by multi-index hashing
   (:mod:`pipeline.core.hashindex`): exact, sub-quadratic. A refresh searches only
   the new hashes against the index.
4. **Verification**: a candidate is a duplicate when its aligned detail
   similarity reaches ``min_similarity`` (or both hashes are within
   ``certain_distance``) *and* the chroma of their 8×8 Lab thumbnails differs by
   at most ``max_colour_distance``: grey structure alone cannot tell a blue
   sapphire from a black onyx of the same cut in the same pose. Verified pairs
   are cached in ``pairs.parquet``.
5. **Clusters** by union-find (``dup_cluster``); one ``is_representative`` per
   cluster (highest resolution, then earliest fetched); the other rows get
   ``excluded_reason = duplicate`` and keep their rows. A cluster whose photos
   carry different labels is not resolved silently: every row gets
   ``label_conflict``, ``needs_review`` and stays out until an annotator decides.

Example:
    $ gemcurate dedupe --data-dir data
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import decisions, manifest
from pipeline.core.atomic import write_text
from pipeline.core.blobstore import BlobProblem, raise_if_damaged, read_verified
from pipeline.core.config import DedupeParams, Params
from pipeline.core.embedding import EmbeddingCache, cosine_pairs, mean_part, unit
from pipeline.core.embedding import ensure as ensure_embeddings
from pipeline.core.flags import ensure_review_columns
from pipeline.core.groups import UnionFind
from pipeline.core.hashindex import HashIndex
from pipeline.core.hashing import (
    FEATURE_VERSION,
    VERIFY_VERSION,
    colour_distance,
    fingerprint,
    similarity,
    to_signed,
)
from pipeline.core.imageio import ImageError
from pipeline.core.parallel import map_items
from pipeline.core.resultcache import in_shard
from pipeline.core.stageio import Staged, StageIO
from pipeline.core.stagerun import StageResult, StageRun, stage

logger = logging.getLogger(__name__)

HASH_COLUMNS = ["image_id", "pixel_sha256", "phash", "dhash", "width", "height", "thumb", "colour",
                "error"]
PAIR_COLUMNS = ["a", "b", "phash_dist", "dhash_dist", "similarity", "colour_dist", "cosine"]


def _fingerprint_file(args: tuple[str, str]) -> dict:
    image_id, path = args
    try:
        f = fingerprint(read_verified(path, image_id))
    except BlobProblem as exc:
        return {"image_id": image_id, "_damaged": str(exc)}
    except (ImageError, OSError) as exc:
        return {"image_id": image_id, "error": str(exc)[:200]}
    return {"image_id": image_id, "pixel_sha256": f.pixel_sha256, "phash": to_signed(f.phash),
            "dhash": to_signed(f.dhash), "width": f.width, "height": f.height, "thumb": f.thumb,
            "colour": f.colour, "error": None}


def fingerprint_all(items: list[tuple[str, str]], workers: int = 0, progress: bool = True
                    ) -> pd.DataFrame:
    """Fingerprint ``(image_id, path)`` items in parallel processes.

    Returns:
        One row per item with :data:`HASH_COLUMNS` (``error`` set for broken files).
    """
    rows = map_items(_fingerprint_file, items, workers, "fingerprint", progress)
    where = Path(items[0][1]).parents if items else ()
    raise_if_damaged(rows, where[min(2, len(where) - 1)] if where else "")  # the store: ab/cd/<id>
    df = pd.DataFrame(rows, columns=HASH_COLUMNS)
    return df.astype({"phash": "Int64", "dhash": "Int64", "width": "Int64", "height": "Int64"})


def _candidates(hashes: pd.DataFrame, new_mask: np.ndarray, p: DedupeParams, full: bool,
                vecs: np.ndarray | None = None) -> pd.DataFrame:
    """Candidate pairs (a < b by position) within either radius, or (given ``vecs``, the unit
    embeddings of the rows) at least ``embedding_cosine`` close, involving a new row unless full.

    Every pair gets its ``cosine`` (NaN without embeddings; 0 where one row has none).
    """
    ph = hashes["phash"].to_numpy(np.int64).view(np.uint64)
    dh = hashes["dhash"].to_numpy(np.int64).view(np.uint64)
    found = []
    for col, arr, r in (("phash", ph, p.phash_radius), ("dhash", dh, p.dhash_radius)):
        if full:
            i, j, _ = HashIndex(arr, r).pairs(r, workers=p.search_threads or None)
        else:
            new = np.flatnonzero(new_mask)
            old = np.flatnonzero(~new_mask)
            qi, oj, _ = HashIndex(arr[old], r).query(arr[new], r, workers=p.search_threads or None)
            i1, j1 = new[qi], old[oj]
            si, sj, _ = HashIndex(arr[new], r).pairs(r, workers=1)
            i = np.concatenate([i1, new[si]])
            j = np.concatenate([j1, new[sj]])
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        found.append(pd.DataFrame({"i": lo, "j": hi}))
        logger.debug("%s radius %d: %d candidate pairs", col, r, len(lo))
    if vecs is not None:
        ei, ej, _ = cosine_pairs(vecs, p.embedding_cosine, None if full else np.flatnonzero(new_mask))
        found.append(pd.DataFrame({"i": ei, "j": ej}))
        logger.debug("embedding cosine %.2f: %d candidate pairs", p.embedding_cosine, len(ei))
    cand = pd.concat(found).drop_duplicates().reset_index(drop=True).astype(np.int64)
    cand["phash_dist"] = np.bitwise_count(ph[cand["i"]] ^ ph[cand["j"]]).astype(np.int64)
    cand["dhash_dist"] = np.bitwise_count(dh[cand["i"]] ^ dh[cand["j"]]).astype(np.int64)
    cand["cosine"] = (np.einsum("ij,ij->i", vecs[cand["i"]], vecs[cand["j"]]).astype(np.float64)
                      if vecs is not None else np.nan)
    return cand


def _similarity(args: tuple[bytes, bytes, float]) -> float:
    return similarity(*args)


def verify(hashes: pd.DataFrame, cand: pd.DataFrame, p: DedupeParams, progress: bool) -> pd.DataFrame:
    """Score candidate pairs: the colour check first, then (for pairs that pass it)
    :func:`pipeline.core.hashing.similarity` in the worker pool.

    A pair whose colours differ cannot be a duplicate whatever its detail, so its
    costly alignment is skipped (``similarity`` NaN); the cache remembers the colour
    threshold it skipped with (see :class:`HashCache`).
    """
    ii, jj = cand["i"].to_numpy(), cand["j"].to_numpy()
    ids = hashes["image_id"].to_numpy()
    colours = hashes["colour"].to_numpy()
    cdist = np.array([colour_distance(colours[i], colours[j]) for i, j in zip(ii, jj, strict=True)],
                     dtype=np.float64)
    check = np.flatnonzero(cdist <= p.max_colour_distance)
    thumbs = hashes["thumb"].to_numpy()
    work = [(thumbs[ii[k]], thumbs[jj[k]], p.min_similarity) for k in check]
    sims = np.full(len(cand), np.nan)
    sims[check] = np.array(map_items(_similarity, work, p.workers, "verify",
                                     progress and len(work) >= 200, chunksize=64), dtype=np.float64)
    return pd.DataFrame({"a": ids[ii], "b": ids[jj],
                         "phash_dist": cand["phash_dist"].to_numpy(),
                         "dhash_dist": cand["dhash_dist"].to_numpy(), "similarity": sims,
                         "colour_dist": cdist,
                         "cosine": cand["cosine"].to_numpy(np.float64) if "cosine" in cand
                         else np.full(len(cand), np.nan)})


def is_duplicate(pairs: pd.DataFrame, p: DedupeParams) -> np.ndarray:
    """The decision rule over verified candidate pairs (however they were found)."""
    certain = (pairs["phash_dist"] <= p.certain_distance) & (pairs["dhash_dist"] <= p.certain_distance)
    same_colour = pairs["colour_dist"] <= p.max_colour_distance
    return ((certain | (pairs["similarity"] >= p.min_similarity)) & same_colour).to_numpy(bool)


def near_copies(items: list[tuple[str, str]], p: DedupeParams,
                embeddings: EmbeddingCache | None = None) -> pd.DataFrame:
    """The verified near-copy pairs ``a, b`` (image ids) among ``(image_id, path)`` files,
    decided as the stage decides them, without a manifest or a cache: for a set of files
    that must be split without a copy on both sides (a held-aside test folder)."""
    where = dict(items)
    hashes = fingerprint_all(sorted(where.items()), p.workers, progress=False)
    good = hashes[hashes["error"].isna()].sort_values("image_id").reset_index(drop=True)
    if len(good) < 2:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    vecs = None
    if p.embedding:
        emb = embeddings if embeddings is not None else EmbeddingCache(None)
        ensure_embeddings(emb, [(i, where[i]) for i in good["image_id"]], p.workers)
        vecs = unit(mean_part(emb.get(good["image_id"])[0]))
    pairs = verify(good, _candidates(good, np.ones(len(good), bool), p, True, vecs), p, False)
    return pairs[is_duplicate(pairs, p)].reset_index(drop=True)


# long: union-find over verified pairs, then each cluster's representative and label conflict,
# vectorised over the whole table
def cluster(df: pd.DataFrame, hashes: pd.DataFrame, pairs: pd.DataFrame, p: DedupeParams
            ) -> pd.DataFrame:
    """Assign clusters, representatives, exclusions and label conflicts (pure function).

    Args:
        df: Raw manifest (relabels applied).
        hashes: Fingerprints by image_id.
        pairs: Verified candidate pairs by image_id.
        p: Dedupe params.
    """
    out = df.copy()
    uf = UnionFind()
    ok = hashes[hashes["error"].isna()]
    # identical pixels: each image joins the first of its pixel hash (a per-group loop
    # costs 0.5 s at 3,000 images, and a refresh pays it every run)
    first_of = ok.groupby("pixel_sha256", sort=False)["image_id"].transform("first")
    same = ok["image_id"] != first_of
    for a, b in zip(first_of[same], ok.loc[same, "image_id"], strict=True):
        uf.union(a, b)
    dup = pairs[is_duplicate(pairs, p)]
    for a, b in zip(dup["a"], dup["b"], strict=True):
        uf.union(a, b)
    roots = {iid: uf.find(iid) for iid in ok["image_id"]}
    smallest: dict[str, str] = {}
    for iid, r in roots.items():  # stable cluster id: the smallest image_id in the cluster
        smallest[r] = min(smallest.get(r, iid), iid)
    out["dup_cluster"] = out["image_id"].map(
        lambda x: smallest[roots[x]] if x in roots else None).astype("string")
    out["dup_size"] = out.groupby("dup_cluster")["image_id"].transform("size").astype("Int64")
    out.loc[out["dup_cluster"].isna(), "dup_size"] = pd.NA
    px = hashes.set_index("image_id")["pixel_sha256"]
    out["pixel_sha256"] = out["image_id"].map(px).astype("string")
    ph = hashes.set_index("image_id")["phash"]
    dh = hashes.set_index("image_id")["dhash"]
    out["phash"] = out["image_id"].map(ph).map(lambda v: None if pd.isna(v) else
                                               f"{int(v) & 0xFFFFFFFFFFFFFFFF:016x}").astype("string")
    out["dhash"] = out["image_id"].map(dh).map(lambda v: None if pd.isna(v) else
                                               f"{int(v) & 0xFFFFFFFFFFFFFFFF:016x}").astype("string")
    bad = out["image_id"].isin(hashes.loc[hashes["error"].notna(), "image_id"])
    undecodable = bad & out["excluded_reason"].isna()
    out.loc[undecodable, "excluded_reason"] = "undecodable"
    out.loc[undecodable, "excluded_detail"] = out.loc[undecodable, "image_id"].map(
        hashes.set_index("image_id")["error"])

    out["is_representative"] = pd.Series(False, index=out.index, dtype="boolean")
    out["dup_of"] = pd.Series(None, index=out.index, dtype="string")
    ensure_review_columns(out)
    eligible = out["excluded_reason"].isna() & out["dup_cluster"].notna()
    pixels = (out["width"].astype("Float64") * out["height"].astype("Float64")).fillna(0)
    order = out.assign(_px=pixels, _el=eligible).sort_values(
        ["dup_cluster", "_el", "_px", "fetched_at", "source_url"],
        ascending=[True, False, False, True, True])
    first = order.groupby("dup_cluster", sort=False).head(1)
    rep_of = first.set_index("dup_cluster")
    out.loc[first.index[first["_el"].to_numpy(bool)], "is_representative"] = True
    members = out["dup_cluster"].notna() & (out["dup_size"] > 1)
    labels = out[eligible].groupby("dup_cluster")["label"].nunique()
    conflict_ids = set(labels[labels > 1].index)
    conflict = out["dup_cluster"].isin(conflict_ids) & eligible
    dup_rows = members & eligible & ~out["is_representative"].fillna(False) & ~conflict
    out.loc[members, "dup_of"] = out.loc[members, "dup_cluster"].map(rep_of["image_id"])
    exact = out["image_id"] == out["dup_of"]
    same_px = out["pixel_sha256"] == out["dup_cluster"].map(rep_of["image_id"]).map(px)
    kind = np.where(exact.fillna(False), "identical bytes",
                    np.where(same_px.fillna(False), "identical pixels", "near duplicate"))
    out.loc[dup_rows, "excluded_reason"] = "duplicate"
    out.loc[dup_rows, "excluded_detail"] = (pd.Series(kind, index=out.index)[dup_rows] + " of "
                                            + out.loc[dup_rows, "dup_cluster"].map(rep_of["source_url"]))
    out.loc[conflict, "excluded_reason"] = "label_conflict"
    out.loc[conflict, "excluded_detail"] = "duplicates labelled " + out.loc[conflict, "dup_cluster"].map(
        out[conflict].groupby("dup_cluster")["label"].agg(lambda s: " / ".join(sorted(set(s)))))
    out.loc[conflict, "needs_review"] = True
    out.loc[conflict, "review_reason"] = "label_conflict"
    return out


class HashCache(Staged):
    """Fingerprints and verified pairs persisted under ``<data_dir>/dedupe/``.

    :func:`run` reads it and hands it the updated tables (:meth:`stage`); ``main()``
    writes them (:meth:`save`) together with the stage's outputs.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir) / "dedupe"
        self.hashes_path = self.dir / "hashes.parquet"
        self.pairs_path = self.dir / "pairs.parquet"
        self.meta_path = self.dir / "index.json"

    def load(self, p: DedupeParams) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """Cached fingerprints (None if absent/stale) and pairs (None if searched differently)."""
        if not self.hashes_path.exists() or not self.meta_path.exists():
            return None, None
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("feature_version") != FEATURE_VERSION:
                logger.info("fingerprint version changed: recomputing all")
                return None, None
            hashes = manifest.read_manifest(self.hashes_path)
            if not set(HASH_COLUMNS) <= set(hashes.columns):
                raise ValueError("columns missing")
        except (OSError, ValueError, AttributeError) as exc:  # a damaged cache costs time only
            logger.warning("%s: ignoring an unreadable fingerprint cache (%s)", self.dir, exc)
            return None, None
        same_search = (meta.get("phash_radius") == p.phash_radius
                       and meta.get("dhash_radius") == p.dhash_radius
                       and meta.get("verify_version") == VERIFY_VERSION
                       # pairs beyond the colour threshold were never aligned: a higher one
                       # needs them verified
                       and meta.get("max_colour_distance", float("inf")) >= p.max_colour_distance
                       and meta.get("embedding_cosine") == (p.embedding_cosine if p.embedding else None)
                       and self.pairs_path.exists())
        try:
            pairs = manifest.read_manifest(self.pairs_path) if same_search else None
        except (OSError, ValueError) as exc:
            logger.warning("%s: ignoring unreadable verified pairs (%s)", self.pairs_path, exc)
            pairs = None
        return hashes, pairs

    def write(self, hashes: pd.DataFrame, pairs: pd.DataFrame, p: DedupeParams) -> None:
        """Write the fingerprints and pairs of a run (``main()`` calls :meth:`save`).

        Shard files are removed afterwards: ``hashes.parquet`` holds what they held.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest.write_manifest(hashes, self.hashes_path)
        manifest.write_manifest(pairs, self.pairs_path)
        write_text(self.meta_path, json.dumps({
            "feature_version": FEATURE_VERSION, "verify_version": VERIFY_VERSION,
            "max_colour_distance": p.max_colour_distance,
            "embedding_cosine": p.embedding_cosine if p.embedding else None,
            "phash_radius": p.phash_radius,
            "dhash_radius": p.dhash_radius, "n_hashes": len(hashes), "n_pairs": len(pairs)}, indent=2))
        for f in (self.dir / "shards").glob("hashes-*-of-*"):
            f.unlink(missing_ok=True)

    def shard_paths(self, shard: int, shards: int) -> tuple[Path, Path]:
        stem = self.dir / "shards" / f"hashes-{shard}-of-{shards}"
        return stem.with_suffix(".parquet"), stem.with_suffix(".key.json")

    def write_shard(self, hashes: pd.DataFrame, shard: int, shards: int) -> None:
        """Fingerprints computed by ``gemcurate dedupe --shard i/n`` (atomic; no lock needed)."""
        rows_path, key_path = self.shard_paths(shard, shards)
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.unlink(missing_ok=True)
        manifest.write_manifest(hashes, rows_path)
        write_text(key_path, json.dumps({"feature_version": FEATURE_VERSION, "rows": len(hashes)}))

    def shard_hashes(self) -> pd.DataFrame | None:
        """What the shard files hold under this code's fingerprint version (None: nothing).

        A file without its key, of another version or unreadable is skipped: it costs
        the full run time, never a result.
        """
        parts = []
        for rows_path in sorted((self.dir / "shards").glob("hashes-*-of-*.parquet")):
            key_path = rows_path.with_name(rows_path.name.removesuffix(".parquet") + ".key.json")
            try:
                if json.loads(key_path.read_text()).get("feature_version") != FEATURE_VERSION:
                    continue
                part = manifest.read_manifest(rows_path)
                if list(part.columns) != HASH_COLUMNS:
                    raise ValueError("other columns")
            except (OSError, ValueError, AttributeError) as exc:
                logger.warning("%s: ignoring a shard's fingerprints (%s)", rows_path, exc)
                continue
            parts.append(part)
        if not parts:
            return None
        return pd.concat(parts, ignore_index=True).drop_duplicates("image_id").reset_index(drop=True)


# long: the stage's steps in order (fingerprints from cache, shards or the pool; embeddings;
# candidates; verification; clusters; decisions), each a helper, with the timings of each
def run(df: pd.DataFrame, params: Params, *, store_root: str | Path,
        cache: HashCache | None = None, latest: pd.DataFrame | None = None,
        progress: bool = False, embeddings: EmbeddingCache | None = None) -> tuple[pd.DataFrame, dict]:
    """Dedupe a raw manifest.

    Args:
        df: The raw manifest.
        params: All params (reads ``params.dedupe``).
        store_root: Root of the content-addressed image store.
        cache: Fingerprints and pairs of earlier runs; given the new ones to save.
        latest: Annotator decisions in force (relabels are applied first).
        progress: Show progress bars.
        embeddings: The shared embedding cache (``dedupe.embedding``): images it lacks are
            embedded into it; without one they are embedded for this run only.

    Returns:
        The dedupe manifest and a metrics dict.

    Example:
        >>> out, metrics = run(raw, params, store_root="data/store")
    """
    t0 = time.perf_counter()
    p = params.dedupe
    if latest is not None:
        df = decisions.apply_labels(df, latest)
    old_hashes, old_pairs = cache.load(p) if cache is not None else (None, None)
    want = df.loc[df["path"].notna(), ["image_id", "path"]].drop_duplicates("image_id")
    known = set(old_hashes["image_id"]) if old_hashes is not None else set()
    todo = want[~want["image_id"].isin(known)]
    # fingerprints `--shard` workers computed count as new ones (their pairs are not searched yet)
    sharded = cache.shard_hashes() if cache is not None else None
    if sharded is not None:
        sharded = sharded[sharded["image_id"].isin(todo["image_id"])]
        todo = todo[~todo["image_id"].isin(sharded["image_id"])]
    items = [(iid, str(Path(store_root) / path)) for iid, path in zip(todo["image_id"], todo["path"],
                                                                      strict=True)]
    t1 = time.perf_counter()
    new_hashes = fingerprint_all(items, p.workers, progress)
    if sharded is not None and len(sharded):
        new_hashes = pd.concat([sharded.astype(new_hashes.dtypes.to_dict()), new_hashes],
                               ignore_index=True) if len(new_hashes) else sharded
    t_hash = time.perf_counter() - t1
    parts = [h for h in (old_hashes, new_hashes) if h is not None and len(h)]
    hashes = pd.concat(parts, ignore_index=True) if parts else new_hashes
    # in image-id order, whatever order the store listed (or the crawler finished) them: a
    # pair is then always compared the same way round (the alignment in `similarity` is not
    # symmetric), so the same photos give the same clusters from any layout or run
    hashes = hashes[hashes["image_id"].isin(want["image_id"])].sort_values(
        "image_id", kind="stable").reset_index(drop=True)
    good = hashes[hashes["error"].isna()].reset_index(drop=True)
    new_mask = good["image_id"].isin(new_hashes["image_id"]).to_numpy()
    full = old_pairs is None or bool(new_mask.all())
    vecs, n_embedded = None, 0
    t_embed = time.perf_counter()
    if p.embedding:
        emb = embeddings if embeddings is not None else EmbeddingCache(None)
        paths = want.drop_duplicates("image_id").set_index("image_id")["path"].reindex(good["image_id"])
        root = Path(store_root)
        n_embedded = ensure_embeddings(emb, [(i, str(root / rel)) for i, rel in
                                             zip(good["image_id"], paths, strict=True)],
                                       p.workers, progress)
        got, _found = emb.get(good["image_id"])
        vecs = unit(mean_part(got))
    t_embed = time.perf_counter() - t_embed
    t2 = time.perf_counter()
    if len(good) < 2 or (not full and not new_mask.any()):
        cand = pd.DataFrame({"i": [], "j": [], "phash_dist": [], "dhash_dist": [], "cosine": []},
                            dtype=np.int64)
    else:
        cand = _candidates(good, new_mask, p, full, vecs)
    t_search = time.perf_counter() - t2
    t3 = time.perf_counter()
    fresh = verify(good, cand, p, progress)
    t_verify = time.perf_counter() - t3
    keep_old = (old_pairs if old_pairs is not None and not full else
                pd.DataFrame(columns=PAIR_COLUMNS))
    keep_old = keep_old[keep_old["a"].isin(good["image_id"]) & keep_old["b"].isin(good["image_id"])]
    pairs = pd.concat([keep_old, fresh], ignore_index=True) if len(keep_old) else fresh
    pairs = pairs.astype({"phash_dist": "int64", "dhash_dist": "int64", "similarity": "float64",
                          "colour_dist": "float64", "cosine": "float64"})
    if cache is not None:
        cache.stage(hashes, pairs, p)
    out = cluster(df, hashes, pairs, p)
    dup_pairs = int(is_duplicate(pairs, p).sum()) if len(pairs) else 0
    metrics = {
        "images": len(want), "fingerprinted": len(items),
        "fingerprints_from_shards": 0 if sharded is None else len(sharded),
        "candidate_pairs": len(pairs), "new_candidate_pairs": len(fresh),
        "near_duplicate_pairs": dup_pairs,
        "clusters_with_duplicates": int(out.loc[out["dup_size"] > 1, "dup_cluster"].nunique()),
        "excluded_duplicates": int((out["excluded_reason"] == "duplicate").sum()),
        "label_conflicts": int((out["excluded_reason"] == "label_conflict").sum()),
        "undecodable": int((out["excluded_reason"] == "undecodable").sum()),
        "images_embedded": n_embedded,
        "incremental": bool(not full), "seconds": {
            "fingerprint": round(t_hash, 3), "embed": round(t_embed, 3), "search": round(t_search, 3),
            "verify": round(t_verify, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    return out, metrics



def run_shard(params: Params, shard: tuple[int, int], data_dir: str | Path | None = None,
              progress: bool | None = None) -> dict:
    """Fingerprint shard ``i`` of ``n`` of the images into ``dedupe/shards/`` (scale-out).

    The per-image work of dedupe is the fingerprint (decode, hashes, thumbnails); the pair
    search and clustering need every fingerprint and stay in the full run, which takes the
    shards' fingerprints as new ones (searched like images fetched today) and removes the
    files. No manifest is written and the data folder is not locked.
    """
    io = StageIO.of(params, data_dir)
    cache = HashCache(io.data_dir)
    raw = io.read("raw")
    old, _ = cache.load(params.dedupe)
    mine = raw[raw["path"].notna() & in_shard(raw["image_id"], *shard)].drop_duplicates("image_id")
    if old is not None:
        mine = mine[~mine["image_id"].isin(old["image_id"])]
    root = io.images(mine)
    items = [(iid, str(root / path)) for iid, path in zip(mine["image_id"], mine["path"], strict=True)]
    show = params.dedupe.progress if progress is None else progress
    hashes = fingerprint_all(items, params.dedupe.workers, show)
    if params.dedupe.embedding:  # this shard's embeddings: one more part of the shared cache
        ensure_embeddings(EmbeddingCache.for_data_dir(io.data_dir), items, params.dedupe.workers, show)
    if len(hashes):  # nothing new: no file, the DVC output data/dedupe stays as it was
        cache.write_shard(hashes, *shard)
    logger.info("dedupe shard %d/%d: %d images fingerprinted", shard[0], shard[1], len(hashes))
    return {"shard": f"{shard[0]}/{shard[1]}", "images": len(hashes), "computed": len(hashes)}


@stage("dedupe", reads="raw", per_shard=run_shard)
def main(ctx: StageRun, df: pd.DataFrame) -> StageResult:
    """Read ``raw.parquet``, dedupe, write ``dedupe.parquet`` and ``metrics/dedupe.json``."""
    io = ctx.io
    cache = HashCache(io.data_dir)
    emb = EmbeddingCache.for_data_dir(io.data_dir)
    emb.folder.mkdir(parents=True, exist_ok=True)  # a DVC output, also with dedupe.embedding off
    out, metrics = run(df, ctx.params, store_root=io.images(df), cache=cache, latest=io.decisions(),
                       progress=ctx.progress, embeddings=emb)
    return StageResult(metrics, out, state=(cache,),
                       summary=f"dedupe: {metrics['images']} images, {metrics['near_duplicate_pairs']} "
                               f"duplicate pairs, {metrics['excluded_duplicates']} excluded as "
                               f"duplicates, {metrics['label_conflicts']} label conflicts")
