"""Filter stage: junk and quality checks, review flags, annotator decisions.

Every decodable image is scored by every enabled check of the registry
(:mod:`pipeline.stages.filter.checks`): ``<check>_score`` in 0…1 and ``is_<check>`` =
score ≥ threshold. A flagged image is excluded with the check's name as
``excluded_reason`` (its row stays). Scores within ``review_band`` of the
threshold set ``needs_review`` with the check in ``review_reason``: the
annotator sees exactly the images the machine is unsure about. Certificate
scores in the band get a second opinion from rapidocr's offline text detector
(when ``ocr_second_opinion`` is on). Finally the decisions table is applied,
so a person's accept / reject / relabel overrides every check, run after run.

Example:
    $ gemcurate filter --data-dir data
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import decisions, manifest
from pipeline.core import hands as handpose
from pipeline.core.blobstore import BlobProblem, raise_if_damaged, read_verified
from pipeline.core.config import FilterParams, Params
from pipeline.core.embedding import EMBED_SIDE, EmbeddingCache, embed, embedding_input, from_bytes, to_bytes
from pipeline.core.flags import add_review, drop_review_reason, ensure_review_columns
from pipeline.core.imageio import ImageError, load_rgb
from pipeline.core.parallel import map_items
from pipeline.core.resultcache import ResultCache, combine, compute_shard, reuse
from pipeline.core.stageio import StageIO
from pipeline.core.stagerun import StageResult, StageRun, stage
from pipeline.stages.filter import checks
from pipeline.stages.filter.checks import junkhead as heads

logger = logging.getLogger(__name__)

# the code that computes a score: a change to any of it rescores every image
_PKG = Path(__file__).parents[2]  # pipeline/
CODE = [Path(__file__), _PKG / "core" / "imageio.py",
        *sorted((Path(__file__).parent / "checks").glob("*.py"))]
# … and, with filter.embedding, the embedding and the head (the head file joins at run time)
EMBED_CODE = [_PKG / "core" / "embedding.py", _PKG / "models" / "lite0_onnx.py",
              _PKG / "models" / "efficientnet_lite.py", _PKG / "models" / "torch_legacy.py"]

_HEADS: dict[str, heads.Head] = {}


def head_file(p: FilterParams, root: str | Path = ".") -> Path:
    """The junk head the filter uses: ``filter.head`` (relative to the project) or the shipped one."""
    return (Path(root) / p.head).resolve() if p.head else heads.SHIPPED


def code_files(p: FilterParams, root: str | Path = ".") -> list[Path]:
    """What the cached scores depend on besides params: the code, the head's and the hand
    models' bytes."""
    files = [*CODE, *EMBED_CODE, head_file(p, root)] if p.embedding else list(CODE)
    return [*files, *handpose.CODE, *handpose.model_files()] if p.hand_pose else files


def _head(path: str) -> heads.Head:
    if path not in _HEADS:
        _HEADS[path] = heads.Head.load(path, verify_name=True)
    return _HEADS[path]


def score_image(rgb: np.ndarray, orig_size: tuple[int, int], url: str, p: FilterParams,
                reload: Callable[[int], np.ndarray] | None = None,
                junk_proba: dict[str, float] | None = None,
                hand_pose: float | None = None) -> dict[str, float]:
    """Scores of every enabled check for one decoded image (pure; tests call it directly).

    ``reload(side)`` decodes the original again at a larger size for a check
    that needs more detail (see :meth:`pipeline.stages.filter.checks.Image.at_least`);
    ``junk_proba`` is the learned head's vote on the image's embedding, ``hand_pose`` the
    hand-landmark model's presence score (:func:`pipeline.models.handpose.hand_presence`).
    """
    image = checks.Image(rgb, orig_size, url if p.use_url_hints else "", reload=reload,
                         junk_proba=junk_proba, hand_pose=hand_pose)
    out: dict[str, float] = {}
    if junk_proba is not None:
        out["head_certificate"] = junk_proba["certificate"]
        out["head_hand"] = junk_proba["hand"]
    if hand_pose is not None:
        out["pose_hand"] = hand_pose
    for name, cp in p.enabled_checks(checks.REGISTRY).items():
        check = checks.get(name)
        s = check.final_score(image)
        if name == "certificate" and p.ocr_second_opinion and abs(s - cp.threshold) < cp.review_band:
            boxes = checks.document.ocr_text_boxes(image.at_least(checks.document.SIDE))
            out["ocr_text_boxes"] = float(boxes)
            # a clear OCR answer settles it; otherwise the heuristic score stands
            if boxes >= p.ocr_min_boxes:
                s = max(s, min(1.0, cp.threshold + cp.review_band))
            elif boxes <= 1:
                s = min(s, max(0.0, cp.threshold - cp.review_band))
        out[name] = s
    return out


def wants_pose(p: FilterParams, junk_proba: dict[str, float] | None) -> bool:
    """Whether an image's hand-presence score can change its hand score.

    Not where the hand check is off, nor where the head is so sure of a product that the
    hand check clears the pose's vote anyway (:data:`pipeline.stages.filter.checks.hand.POSE_VETO`): on a
    loose-gem catalog that is most images, and skipping them changes no score.
    """
    if not p.hand_pose or "hand" not in p.enabled_checks(checks.REGISTRY):
        return False
    return junk_proba is None or junk_proba["hand"] > checks.hand.POSE_VETO[0]


def _score_file(args: tuple[str, str, str, FilterParams, str | None, bytes | None]) -> dict:
    image_id, path, url, p, head_path, known = args
    try:
        data = read_verified(path, image_id)
        loaded = load_rgb(data, max_side=p.analysis_side)
    except BlobProblem as exc:
        return {"image_id": image_id, "_damaged": str(exc)}
    except (ImageError, OSError) as exc:
        return {"image_id": image_id, "_error": str(exc)[:200]}

    def reload(side: int) -> np.ndarray:
        return load_rgb(data, max_side=side).array

    extra: dict = {}
    proba = None
    if head_path is not None:
        if known is None:  # dedupe did not embed it (dedupe.embedding off): computed, not kept
            src = loaded.array if p.analysis_side == EMBED_SIDE else embedding_input(data)
            known = to_bytes(embed([src])[0])
            extra["_embedded"] = True
        vec = from_bytes(known)  # as stored (float16): a score is the same cached or not
        proba = dict(zip(heads.LABELS, (float(v) for v in _head(head_path).proba(vec)[0]), strict=True))
    try:
        pose = (handpose.hand_presence(loaded.array, checks.hand.skin_regions(loaded.array))
                if wants_pose(p, proba) else None)
        return {"image_id": image_id, **score_image(loaded.array, loaded.orig_size, url, p, reload, proba,
                                                    pose), **extra}
    except (ImageError, OSError) as exc:
        return {"image_id": image_id, "_error": str(exc)[:200]}


def score_all(items: list[tuple[str, str, str]], p: FilterParams, progress: bool,
              embeddings: EmbeddingCache | None = None, root: str | Path = ".") -> pd.DataFrame:
    """Score ``(image_id, path, url)`` items in parallel processes.

    With ``filter.embedding``, each image's embedding comes from ``embeddings`` (which the
    dedupe stage fills) or, where it has none, is computed by the worker that decodes it
    for this run only: the cache is the dedupe stage's output, never written here.
    """
    head_path = None
    known: list[bytes | None] = [None] * len(items)
    if p.embedding and items:
        head_path = str(head_file(p, root))
        _head(head_path)  # a bad head file fails here, once, with its name
        if embeddings is not None:
            vecs, found = embeddings.get([it[0] for it in items])
            known = [to_bytes(v) if f else None for v, f in zip(vecs, found, strict=True)]
    if p.hand_pose and items:
        for name in (handpose.PALM, handpose.LANDMARK):
            handpose.model_bytes(name)  # a missing or altered model fails here, once
    rows = map_items(_score_file, [(*it, p, head_path, k) for it, k in zip(items, known, strict=True)],
                     p.workers, "filter", progress)
    raise_if_damaged(rows, Path(items[0][1]).parents[2] if items else "")
    out = pd.DataFrame(rows)
    if "_embedded" in out.columns:
        out.attrs["embedded"] = int(out["_embedded"].fillna(False).astype(bool).sum())
        out = out.drop(columns="_embedded")
    return out


def apply_scores(df: pd.DataFrame, scores: pd.DataFrame, p: FilterParams) -> pd.DataFrame:
    """Turn per-image scores into columns, exclusions and review flags (pure)."""
    out = df.copy()
    ensure_review_columns(out)
    by_id = scores.drop_duplicates("image_id").set_index("image_id") if len(scores) else None
    if by_id is not None and "_error" in by_id.columns:
        err = out["image_id"].map(by_id["_error"])
        hit = err.notna() & out["excluded_reason"].isna()
        out.loc[hit, "excluded_reason"] = "undecodable"
        out.loc[hit, "excluded_detail"] = err[hit]
    for col in ("ocr_text_boxes", "head_certificate", "head_hand", "pose_hand"):
        out[col] = (out["image_id"].map(by_id[col]) if by_id is not None and col in by_id.columns
                    else pd.Series(np.nan, index=out.index)).astype("Float64")
    for name, cp in p.enabled_checks(checks.REGISTRY).items():
        sc = (out["image_id"].map(by_id[name]) if by_id is not None and name in by_id.columns
              else pd.Series(np.nan, index=out.index))
        sc = sc.astype("Float64")
        out[manifest.score_col(name)] = sc
        flag = (sc >= cp.threshold).astype("boolean")
        if name == "hand" and p.hand_policy == "keep":
            # a worn or held product is the product photo here: tagged, not junk, not reviewed
            out["is_worn"] = flag
            out[manifest.flag_col(name)] = flag & False
            continue
        out[manifest.flag_col(name)] = flag
        exclude = flag.fillna(False) & out["excluded_reason"].isna()
        out.loc[exclude, "excluded_reason"] = name
        out.loc[exclude, "excluded_detail"] = f"{name} score " + sc[exclude].round(2).astype(str)
        if cp.review_band > 0:
            add_review(out, (sc - cp.threshold).abs() < cp.review_band, name)
    if "is_worn" not in out.columns:
        out["is_worn"] = pd.Series(pd.NA, index=out.index, dtype="boolean")  # junk policy: not asked
    junk = [n for n in JUNK_CHECKS if n in p.enabled_checks(checks.REGISTRY)
            and not (n == "hand" and p.hand_policy == "keep")]
    _junk_over_duplicates(out, junk)
    return out


JUNK_CHECKS = ("certificate", "hand")


def _junk_over_duplicates(out: pd.DataFrame, names: list[str]) -> None:
    """A certificate or hand photo is out as junk, not as a duplicate or a label conflict.

    Dedupe runs first and can cluster junk: certificates from one lab template
    look alike at thumbnail size, so scans of different stones (different
    labels) become a "label conflict" an annotator would have to clear. Once the
    filter knows they are junk, the junk reason replaces the duplicate reason and
    the conflict leaves their review reasons (in place).
    """
    for name in names:
        flag = out[manifest.flag_col(name)].fillna(False).astype(bool)
        stale = flag & out["excluded_reason"].isin(["duplicate", "label_conflict"]).fillna(False)
        if not stale.any():
            continue
        out.loc[stale, "excluded_reason"] = name
        out.loc[stale, "excluded_detail"] = f"{name} (also clustered with other images)"
        drop_review_reason(out, stale, "label_conflict")


# long: the stage's steps in order (cache, score in the pool, flags per check, decisions, metrics)
def run(df: pd.DataFrame, params: Params, *, store_root: str | Path,
        cache: ResultCache | None = None, latest: pd.DataFrame | None = None,
        progress: bool = False, embeddings: EmbeddingCache | None = None,
        root: str | Path = ".") -> tuple[pd.DataFrame, dict]:
    """Score, flag and apply decisions to the dedupe manifest.

    Args:
        df: The dedupe manifest.
        params: All params (reads ``params.filter``).
        store_root: Root of the content-addressed image store.
        cache: Per-image scores of earlier runs (same params and code): only images
            it does not hold, or holds under another URL (URL hints), are scored.
        latest: Annotator decisions in force.
        progress: Show a progress bar.
        embeddings: The shared embedding cache the dedupe stage fills (read only here):
            images it lacks are embedded for this run.
        root: The project root (``filter.head`` is relative to it).

    Returns:
        The filter manifest and a metrics dict.

    Example:
        >>> out, metrics = run(dedupe_manifest, params, store_root="data/store")
    """
    t0 = time.perf_counter()
    p = params.filter
    todo = df[df["path"].notna() & (df["excluded_reason"] != "undecodable").fillna(True)]
    todo = todo.drop_duplicates("image_id")
    old, _ = reuse(cache, todo["image_id"])
    # a score depends on the pixels (the image_id) and on the file name (URL hints)
    if old is not None and "_hint" in old.columns:
        now = todo.set_index("image_id").loc[old["image_id"], "source_url"].map(checks.hint_name)
        old = old[old["_hint"].to_numpy() == now.to_numpy()]
    elif old is not None:
        old = None
    known = set(old["image_id"]) if old is not None else set()
    items = [(i, str(Path(store_root) / pth), u) for i, pth, u in
             zip(todo["image_id"], todo["path"], todo["source_url"], strict=True) if i not in known]
    fresh = score_all(items, p, progress, embeddings, root)
    t_score = time.perf_counter() - t0
    if len(fresh):
        fresh["_hint"] = fresh["image_id"].map(dict(zip(todo["image_id"], todo["source_url"].map(
            checks.hint_name), strict=True)))
    scores = combine(cache, old, fresh)
    out = apply_scores(df, scores, p)
    out = decisions.apply(out, latest if latest is not None
                          else pd.DataFrame(columns=decisions.COLUMNS))
    per_check = {n: int(out[manifest.flag_col(n)].fillna(False).sum())
                 for n in p.enabled_checks(checks.REGISTRY)}
    metrics = {
        "images_scored": len(items), "images_reused": len(known), "flagged": per_check,
        "needs_review": int(out["needs_review"].fillna(False).sum()),
        "excluded": {str(k): int(v) for k, v in out["excluded_reason"].value_counts().items()},
        "in_dataset": int(out["excluded_reason"].isna().sum()),
        "ocr_second_opinions": int(out["ocr_text_boxes"].notna().sum()) if "ocr_text_boxes" in out else 0,
        "images_embedded": int(fresh.attrs.get("embedded", 0)),
        "junk_head": (head_file(p, root).name if p.embedding else None),
        "decisions_applied": int(out["decision"].notna().sum()) if "decision" in out else 0,
        "seconds": round(time.perf_counter() - t0, 3),
        "images_per_second": round(len(items) / t_score, 1) if t_score > 0 and items else None,
    }
    return out, metrics


def run_shard(params: Params, shard: tuple[int, int], data_dir: str | Path | None = None,
              progress: bool | None = None) -> dict:
    """Shard ``i`` of ``n`` of the per-image results into ``filter/shards/`` (scale-out; what a
    shard writes and why it holds no lock: :mod:`pipeline.core.stagerun`)."""
    io = StageIO.of(params, data_dir)
    cache = ResultCache(io.data_dir / "filter", params.filter, code_files(params.filter))
    latest = io.decisions()
    show = params.filter.progress if progress is None else progress
    emb = EmbeddingCache.for_data_dir(io.data_dir) if params.filter.embedding else None
    return compute_shard(cache, io.read("dedupe"), shard,
                         lambda d: run(d, params, store_root=io.images(d), cache=cache, latest=latest,
                                       progress=show, embeddings=emb)[1])


@stage("filter", reads="dedupe", per_shard=run_shard)
def main(ctx: StageRun, df: pd.DataFrame) -> StageResult:
    """Read ``dedupe.parquet``, filter, write ``filter.parquet`` and ``metrics/filter.json``."""
    p, io = ctx.params, ctx.io
    cache = ResultCache(io.data_dir / "filter", p.filter, code_files(p.filter))
    out, metrics = run(df, p, store_root=io.images(df), cache=cache, latest=io.decisions(),
                       progress=ctx.progress,
                       embeddings=EmbeddingCache.for_data_dir(io.data_dir) if p.filter.embedding else None)
    return StageResult(metrics, out, state=(cache,),
                       summary=f"filter: {metrics['images_scored']} scored, flagged "
                               f"{metrics['flagged']}, {metrics['needs_review']} need review")
