"""The content-addressed image store.

Every downloaded file is stored once, under the sha256 of its bytes:
``<root>/ab/cd/<sha256>.<ext>``. A duplicate download costs no space, and a
path never comes from a URL (so a hostile URL cannot write outside the root).

Example:
    >>> store = BlobStore("data/store")
    >>> sha, rel = store.put(b"...jpeg bytes...", "jpg")
    >>> store.path(rel).read_bytes()[:3]
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from pipeline.core import atomic
from pipeline.errors import UserError

logger = logging.getLogger(__name__)

_EXT_RE = re.compile(r"^[a-z0-9]{1,5}$")


def sha256_hex(data: bytes) -> str:
    """The lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The lowercase hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def relpath_for(sha: str, ext: str) -> str:
    """The store-relative path of a blob: ``ab/cd/<sha>.<ext>``."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError(f"not a sha256 hex digest: {sha!r}")
    ext = ext.lower().lstrip(".")
    if not _EXT_RE.match(ext):
        raise ValueError(f"bad extension {ext!r}")
    return f"{sha[:2]}/{sha[2:4]}/{sha}.{ext}"


class BlobStore:
    """A local folder of content-addressed blobs.

    Args:
        root: The store's root folder (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, relpath: str) -> Path:
        """The absolute path of a store-relative path."""
        return self.root / relpath

    def exists(self, relpath: str) -> bool:
        return (self.root / relpath).is_file()

    def put(self, data: bytes, ext: str, sha: str | None = None) -> tuple[str, str]:
        """Store ``data`` (idempotent) and return ``(sha256, relpath)``.

        Args:
            data: The bytes.
            ext: File extension without the dot (``jpg``, ``png``, ``bin``...).
            sha: The sha256 if the caller already computed it.
        """
        sha = sha or sha256_hex(data)
        rel = relpath_for(sha, ext)
        dest = self.root / rel
        if not dest.is_file() or dest.stat().st_size != len(data):
            atomic.write_bytes(dest, data)
        return sha, rel

    def get(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()


class BlobProblem(OSError):
    """A stored file is missing or its bytes are not the image its id names."""


class StoreDamaged(UserError, RuntimeError):
    """The image store lacks files the manifest lists, or holds other bytes under their names."""


def read_verified(path: str | Path, image_id: str) -> bytes:
    """The bytes at ``path``, checked against ``image_id`` (their sha256).

    Raises:
        BlobProblem: The file is missing, or its bytes hash to something else.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BlobProblem(f"{path}: missing from the image store") from None
    digest = sha256_hex(data)
    if digest != image_id:
        raise BlobProblem(f"{path}: holds other bytes than image {image_id[:12]}… "
                          f"(sha256 {digest[:12]}…)")
    return data


def raise_if_damaged(rows: list[dict], root: str | Path) -> None:
    """Stop a stage whose workers found missing or altered files (``_damaged`` in a row).

    A missing blob once became ``excluded_reason=undecodable`` and the dataset quietly
    lost the image; now the stage stops and says how to get the files back.
    """
    problems = [r["_damaged"] for r in rows if r.get("_damaged")]
    if problems:
        raise StoreDamaged(
            f"the image store {root} is damaged: {len(problems)} file(s) listed in the manifest "
            f"are missing or altered (e.g. {problems[0]}); restore it (`dvc checkout data/store`) "
            "or run `gemcurate scrape`, which fetches missing files again")
