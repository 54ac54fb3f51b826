"""Every blob a stage is about to trust is checked against its name, whatever the caches hold.

The per-image caches (fingerprints, scores, crops, embeddings) are keyed by ``image_id``,
the sha256 of the image's bytes. A cache row says what those bytes gave; it is no proof
that the file in the store still *is* those bytes. Before a stage reuses a cached row,
:func:`verify` checks each blob the stage's input names:

* it exists (a deleted blob stops the stage);
* its ``stat`` (size, mtime, ctime, inode) is the one recorded when its bytes were last
  hashed and found to match their name: then it is trusted without reading it;
* otherwise it is read and hashed now, and recorded when it matches.

ctime is the strong part of the key: any write, replacement or rename of a file sets it,
and no user tool can set it back (``touch -r`` and ``cp -p`` restore mtime only). Hashing
every blob on every run would cost a refresh of 140,000 images tens of seconds of disk
reads for nothing; a ``stat`` of each costs well under a second (``bench/blobcheck.py``).
``full=True`` (``--verify`` of the stage commands, ``gemcurate verify``) hashes every one.

The record lives in ``<data_dir>/state/verified_blobs.parquet``, written atomically; a lost
or unreadable record only costs one re-hash of each blob.

Example:
    >>> stats = verify(store_root, raw_manifest, data_dir)   # raises StoreDamaged
    >>> stats["hashed"], stats["trusted"]
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from pipeline.core.atomic import atomic_path
from pipeline.core.blobstore import StoreDamaged, sha256_file

logger = logging.getLogger(__name__)

RECORD = Path("state") / "verified_blobs.parquet"
COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "ino")
SHOWN = 5  # damaged blobs named one by one in the message


def record_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / RECORD


def load_record(data_dir: str | Path) -> dict[str, tuple[int, int, int, int]]:
    path = record_path(data_dir)
    if not path.exists():
        return {}
    try:
        df = pd.read_parquet(path)
        if list(df.columns) != list(COLUMNS):
            raise ValueError("unexpected columns")
    except (OSError, ValueError) as exc:  # a damaged record costs a re-hash, never a result
        logger.warning("%s: unreadable (%s); every blob is hashed again", path, exc)
        return {}
    return {p: (int(s), int(m), int(c), int(i)) for p, s, m, c, i in df.itertuples(index=False)}


def save_record(data_dir: str | Path, known: dict[str, tuple[int, int, int, int]]) -> None:
    path = record_path(data_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        df = pd.DataFrame([(p, *v) for p, v in known.items()], columns=list(COLUMNS))
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    except OSError as exc:  # an unwritable record only costs time on the next run
        logger.warning("%s: cannot record verified blobs (%s)", path, exc)


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def check(root: Path, rel: str, image_id: str, known: dict, full: bool) -> tuple[str | None, bool]:
    """The problem of one blob (``None`` when it is the image its id names), and whether
    it was hashed (``False``: trusted by its recorded ``stat``)."""
    f = root / rel
    try:
        st = f.stat()
    except FileNotFoundError:
        known.pop(rel, None)
        return f"{f}: missing from the image store", False
    except OSError as exc:
        return f"{f}: unreadable ({exc.strerror or exc})", False
    key = _key(st)
    if not full and known.get(rel) == key:
        return None, False
    try:
        digest = sha256_file(f)
    except OSError as exc:
        return f"{f}: unreadable ({exc.strerror or exc})", True
    if digest != image_id:
        known.pop(rel, None)
        return f"{f}: holds other bytes than image {image_id[:12]}… (sha256 {digest[:12]}…)", True
    known[rel] = key
    return None, True


def verify(root: str | Path, df: pd.DataFrame, data_dir: str | Path, full: bool = False) -> dict:
    """Check every blob ``df`` names (``path``, ``image_id``) before a stage trusts it.

    Args:
        root: The store's local folder.
        df: Rows with ``image_id`` and ``path`` (rows without a path are skipped).
        data_dir: Where the record of verified blobs is kept.
        full: Hash every blob, whatever the record says.

    Returns:
        ``{"blobs", "hashed", "trusted"}``.

    Raises:
        StoreDamaged: Naming up to :data:`SHOWN` damaged blobs and how to restore them.
    """
    root = Path(root)
    if "path" not in df.columns or not len(df):
        return {"blobs": 0, "hashed": 0, "trusted": 0}
    use = df["path"].notna()
    if "status" in df.columns:  # an image the store removed is read by no stage
        use &= df["status"].fillna("active") == "active"
    rows = df.loc[use, ["path", "image_id"]].drop_duplicates("path")
    known = load_record(data_dir)
    before = dict(known)
    problems = []
    hashed = 0
    for rel, image_id in rows.itertuples(index=False):
        problem, read = check(root, rel, image_id, known, full)
        hashed += read
        if problem:
            problems.append(problem)
    if known != before:
        save_record(data_dir, known)
    if problems:
        shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more"
                                               if len(problems) > SHOWN else "")
        raise StoreDamaged(
            f"the image store {root} is damaged: {len(problems)} file(s) listed in the manifest "
            f"are missing or altered ({shown}); restore it (`dvc checkout data/store`) or run "
            "`gemcurate scrape`, which fetches missing files again")
    return {"blobs": len(rows), "hashed": int(hashed), "trusted": len(rows) - int(hashed)}
