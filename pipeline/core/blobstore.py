"""The content-addressed image store.

Every downloaded file is stored once, under the sha256 of its bytes:
``<root>/ab/cd/<sha256>.<ext>``. A duplicate download costs no space, and a
path never comes from a URL (so a hostile URL cannot write outside the root).

Many machines share one store in object storage: ``data.store_root: s3://bucket/prefix``
opens a :class:`MirroredStore`, the bucket being the shared store and ``<data_dir>/store``
this machine's mirror of it. A scrape writes each blob to both; a stage that reads
images first fetches the blobs its manifest lists and the mirror lacks
(:meth:`MirroredStore.fetch`), checking each against the sha256 in its name, so a stage
reads local files as before and a blob altered in the bucket is never used. Blobs are
immutable (named by their bytes), so a mirror is never stale; ``dvc add data/store``
(``gemcurate snapshot``) versions the mirror as before. Credentials and the endpoint come
from the usual AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL`` for MinIO or another S3 service), never from params.

Example:
    >>> store = BlobStore("data/store")
    >>> sha, rel = store.put(b"...jpeg bytes...", "jpg")
    >>> store.path(rel).read_bytes()[:3]
    >>> shared = open_store("s3://gems/store", mirror="data/store")
    >>> shared.fetch(raw["path"])            # what the mirror lacks, verified
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import atomic
from pipeline.core.errors import UserError

logger = logging.getLogger(__name__)

_EXT_RE = re.compile(r"^[a-z0-9]{1,5}$")
_REL_RE = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})\.[a-z0-9]{1,5}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
SCHEMES = ("s3",)


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

    def fetch(self, relpaths: Iterable[str]) -> Fetched:
        """A local store has nothing to fetch: counts what is here and what is not."""
        want = {r for r in relpaths if isinstance(r, str) and r}
        missing = sorted(r for r in want if not self.exists(r))
        return Fetched(len(want) - len(missing), 0, missing, [])


def sha_of_relpath(relpath: str) -> str:
    """The sha256 a store-relative path names (``ab/cd/<sha>.<ext>``), checked."""
    m = _REL_RE.fullmatch(relpath)
    if not m or m.group(1) != m.group(3)[:2] or m.group(2) != m.group(3)[2:4]:
        raise ValueError(f"not a store path: {relpath!r}")
    return m.group(3)


@dataclass(frozen=True)
class StoreURL:
    """A shared store's location: ``s3://<bucket>[/<prefix>]``."""

    scheme: str
    bucket: str
    prefix: str

    def key(self, relpath: str) -> str:
        """The object path (``bucket/prefix/ab/cd/<sha>.<ext>``) of a blob."""
        return "/".join(p for p in (self.bucket, self.prefix, relpath) if p)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.key('')}".rstrip("/")


def parse_store_url(url: str) -> StoreURL:
    """Check an object-storage URL for ``data.store_root``.

    Raises:
        ValueError: Another scheme than ``s3://``, a bad bucket name, or a prefix with
            characters other than letters, digits, ``._-`` and ``/`` (no ``..``, no query).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"{url!r}: a local folder or s3://bucket/prefix (schemes: {', '.join(SCHEMES)})")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{url!r}: {bucket!r} is not an S3 bucket name")
    if prefix and (not _PREFIX_RE.fullmatch(prefix) or ".." in prefix.split("/")):
        raise ValueError(f"{url!r}: the prefix {prefix!r} may hold letters, digits, '._-' and '/'")
    return StoreURL(scheme, bucket, prefix)


def _filesystem(scheme: str):
    try:
        import fsspec

        return fsspec.filesystem(scheme)
    except ImportError as exc:
        raise UserError(f"data.store_root is an {scheme}:// URL but its filesystem is not installed "
                        f"({exc}); pip install 'gemcurate[s3]'") from None


class StoreUnavailable(UserError, OSError):
    """The shared store cannot be reached, or its bucket does not exist."""


@dataclass(frozen=True)
class Fetched:
    """What :meth:`MirroredStore.fetch` did: blobs already here, downloaded, missing, bad."""

    present: int
    fetched: int
    missing: list[str]
    altered: list[str]


class MirroredStore(BlobStore):
    """A store in object storage with a local, verified mirror (``root``).

    Args:
        url: ``s3://bucket/prefix``.
        mirror: This machine's folder of the same blobs (the paths stages read).
        fs: An fsspec filesystem (default: the URL's scheme's, e.g. s3fs).
        workers: Parallel transfers of :meth:`fetch`.
    """

    def __init__(self, url: str, mirror: str | Path, fs=None, workers: int = 16) -> None:
        super().__init__(mirror)
        self.url = parse_store_url(url)
        self.fs = fs or _filesystem(self.url.scheme)
        self.workers = workers

    def __repr__(self) -> str:
        return f"MirroredStore({self.url}, mirror={self.root})"

    def exists(self, relpath: str) -> bool:
        return super().exists(relpath) or self.fs.exists(self.url.key(relpath))

    def put(self, data: bytes, ext: str, sha: str | None = None) -> tuple[str, str]:
        """Store ``data`` in the mirror and, when the bucket lacks it, in the bucket."""
        sha, rel = super().put(data, ext, sha)
        key = self.url.key(rel)
        try:
            if not self.fs.exists(key):
                self.fs.pipe_file(key, data)
        except FileNotFoundError:
            raise StoreUnavailable(f"{self.url}: the bucket {self.url.bucket!r} does not exist; create "
                                   "it (`aws s3 mb`, `mc mb`) or fix data.store_root") from None
        except OSError:
            raise
        except Exception as exc:  # botocore's connection and credential errors are not OSErrors
            raise StoreUnavailable(f"{self.url}: cannot write ({type(exc).__name__}: {exc})") from exc
        return sha, rel

    def get(self, relpath: str) -> bytes:
        if not super().exists(relpath):
            done = self.fetch([relpath])
            if done.missing or done.altered:
                raise BlobProblem(f"{self.url.key(relpath)}: "
                                  f"{'missing' if done.missing else 'holds other bytes than its name'}")
        return super().get(relpath)

    def _fetch_one(self, rel: str) -> str:
        try:
            data = self.fs.cat_file(self.url.key(rel))
        except FileNotFoundError:
            return "missing"
        if sha256_hex(data) != sha_of_relpath(rel):
            return "altered"
        atomic.write_bytes(self.root / rel, data)
        return "fetched"

    def fetch(self, relpaths: Iterable[str]) -> Fetched:
        """Download into the mirror every blob of ``relpaths`` it lacks, verified.

        A blob whose bytes do not hash to its name is not written (the stage then finds
        it missing and stops, naming the store); nothing raises here.
        """
        want = sorted({r for r in relpaths if isinstance(r, str) and r})
        for r in want:
            sha_of_relpath(r)  # a manifest on disk is input: only store paths reach the bucket
        todo = [r for r in want if not (self.root / r).is_file()]
        results: list[str] = []
        if todo:
            try:
                with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(todo)))) as pool:
                    results = list(pool.map(self._fetch_one, todo))
            except Exception as exc:
                raise StoreUnavailable(f"{self.url}: cannot fetch {len(todo)} blob(s) into {self.root} "
                                       f"({type(exc).__name__}: {exc}); check the endpoint and "
                                       "credentials (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID)") from exc
        missing = [r for r, x in zip(todo, results, strict=True) if x == "missing"]
        altered = [r for r, x in zip(todo, results, strict=True) if x == "altered"]
        for r in altered:
            logger.warning("%s: the bucket's bytes do not hash to the name; not used", self.url.key(r))
        out = Fetched(len(want) - len(todo), results.count("fetched"), missing, altered)
        if todo:
            logger.info("image store %s: %d blob(s) fetched into %s (%d already here, %d missing, "
                        "%d altered)", self.url, out.fetched, self.root, out.present, len(missing),
                        len(altered))
        return out


def open_store(store_root: str | Path | None, data_dir: str | Path) -> BlobStore:
    """The store ``data.store_root`` names: a local folder, or a bucket with its mirror."""
    mirror = Path(data_dir) / "store"
    if store_root is None:
        return BlobStore(mirror)
    if "://" in str(store_root):
        return MirroredStore(str(store_root), mirror)
    return BlobStore(store_root)


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
