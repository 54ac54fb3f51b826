"""Dataset versions: snapshot the raw data, publish a validated dataset, pull one by version.

A dataset version is a git tag (``dataset/vYYYY.MM.DD``, ``.2``, ``.3`` for more
the same day) on a commit whose ``dvc.lock`` and ``*.dvc`` files describe the
data, plus the data itself in the DVC remote. So a trainer on any clone gets
exactly that dataset with ``gemcurate pull --version V`` or plain
``dvc get <repo> data/dataset --rev dataset/vV``.

``publish`` refuses when validation failed or is stale, when the exported
dataset does not match its checksums, or when the DVC pipeline is not up to
date (``dvc status`` not clean): what is tagged is always what was validated.

Example:
    $ gemcurate snapshot            # after a scrape: dvc add the raw data
    $ dvc repro
    $ gemcurate publish             # tag dataset/v2026.11.22, dvc push
    $ gemcurate pull --version 2026.11.22 --out /tmp/ds
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import decisions, manifest
from pipeline.core.blobstore import sha256_file, sha256_hex
from pipeline.core.config import Params
from pipeline.core.errors import UserError
from pipeline.core.tools import tool
from pipeline.core.validation import ValidationFailed, passed_result

logger = logging.getLogger(__name__)

GIT_ID = ["-c", "user.name=gemcurate", "-c", "user.email=gemcurate@localhost"]


class PublishError(UserError, RuntimeError):
    """Publishing or pulling cannot go on; the message says why and what to do."""


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    logger.debug("run %s", " ".join(cmd))
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise PublishError(f"`{' '.join(cmd)}` failed ({res.returncode}): "
                           f"{(res.stderr or res.stdout).strip()[-2000:]}")
    return res


def dvc_cmd() -> list[str]:
    """DVC from this interpreter's environment (the venv), else from PATH."""
    return tool("dvc")


def repo_root(start: Path | None = None) -> Path:
    res = _run(["git", "rev-parse", "--show-toplevel"], start or Path.cwd())
    return Path(res.stdout.strip())


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    has_id = _run(["git", "config", "user.email"], root, check=False).returncode == 0
    return _run(["git", *([] if has_id else GIT_ID), *args], root, check=check)


def snapshot(root: Path, data_dir: str = "data", store_url: str | None = None) -> list[str]:
    """Track the raw snapshot with DVC (``dvc add``) and make sure the reviews DB exists.

    With a shared store (``store_url``, ``s3://...``), the mirror ``<data_dir>/store`` first
    gets every blob ``raw.parquet`` lists (verified), wherever the scrape ran.
    """
    d = root / data_dir
    if not (d / "manifests" / "raw.parquet").exists():
        raise PublishError(f"{d}/manifests/raw.parquet missing: scrape first")
    if store_url:
        from pipeline.core.blobstore import MirroredStore

        raw = manifest.read_manifest(d / "manifests" / "raw.parquet")
        got = MirroredStore(store_url, d / "store").fetch(raw["path"].dropna())
        if got.missing or got.altered:
            bad = (got.missing + got.altered)[0]
            raise PublishError(f"snapshot refused: {len(got.missing)} blob(s) raw.parquet lists are "
                               f"missing from {store_url} and {len(got.altered)} hold other bytes "
                               f"than their name (e.g. {bad}); rerun `gemcurate scrape`")
    decisions.connect(decisions.review_url(d)).dispose()  # creates the table, settles the file
    targets = [f"{data_dir}/store", f"{data_dir}/manifests/raw.parquet"]
    _run([*dvc_cmd(), "add", "-q", *targets], root)
    return [t + ".dvc" for t in targets]


def verify_dir(dataset_dir: Path, deep: bool = True) -> int:
    """Check ``SHA256SUMS`` (and, deep, every image's sha256 inside the shards).

    Returns:
        Files (or images, deep) verified.

    Raises:
        PublishError: A file is missing or differs.
    """
    sums = dataset_dir / "SHA256SUMS"
    if not sums.exists():
        raise PublishError(f"{sums} missing: not an exported gemcurate dataset")
    lines = sums.read_text().splitlines()
    for line in lines:
        digest, name = line.split("  ", 1)
        path = dataset_dir / name
        if not path.exists():
            raise PublishError(f"{name}: missing")
        if sha256_file(path) != digest:
            raise PublishError(f"{name}: checksum differs from SHA256SUMS")
    n = len(lines)
    if deep:
        man = manifest.read_manifest(dataset_dir / "manifest.parquet")
        want = dict(zip(man["member"], man["sha256"], strict=True))
        seen = 0
        for shard in sorted((dataset_dir / "shards").glob("*.tar")):
            with tarfile.open(shard) as tar:
                for m in tar:
                    if m.name in want:
                        data = tar.extractfile(m).read()
                        if sha256_hex(data) != want[m.name]:
                            raise PublishError(f"{shard.name}/{m.name}: image checksum differs")
                        seen += 1
        if seen != len(want):
            raise PublishError(f"{len(want) - seen} image(s) of manifest.parquet not in the shards")
        n = seen
    return n


@dataclass(frozen=True)
class Published:
    tag: str
    commit: str
    images: int
    card: Path
    pushed: bool


def next_tag(root: Path, prefix: str, today: dt.date | None = None) -> str:
    day = (today or dt.datetime.now(dt.UTC).date()).strftime("%Y.%m.%d")
    existing = set(_run(["git", "tag", "--list", f"{prefix}{day}*"], root).stdout.split())
    tag, k = f"{prefix}{day}", 1
    while tag in existing:
        k += 1
        tag = f"{prefix}{day}.{k}"
    return tag


def publish(params: Params, root: Path | None = None, data_dir: str = "data",
            require_clean: bool = True) -> Published:
    """Tag and push the validated dataset (see the module doc for the refusals)."""
    root = root or repo_root()
    d = root / data_dir
    try:
        validation = passed_result(d)
    except ValidationFailed as exc:
        raise PublishError(f"publish refused: {exc}") from exc
    verify_dir(d / "dataset", deep=False)
    if require_clean:
        # the dataset's stages only: a model trained on it is the trainer's, not a condition
        st = _run([*dvc_cmd(), "status", "export", "--with-deps", "--json"], root)
        status = json.loads(st.stdout or "{}")
        if status:
            raise PublishError("publish refused: the dataset's DVC stages are not up to date "
                               f"(`dvc status export --with-deps`: {', '.join(sorted(status))}); "
                               "run `dvc repro export`")
    tracked = ["dvc.lock", *[p for p in (f"{data_dir}/store.dvc", f"{data_dir}/manifests/raw.parquet.dvc")
                             if (root / p).exists()]]
    _git(root, "add", "-f", *tracked)
    tag = next_tag(root, params.publish.tag_prefix)
    ds = manifest.read_manifest(d / "dataset" / "manifest.parquet")
    if _run(["git", "diff", "--cached", "--quiet"], root, check=False).returncode != 0:
        _git(root, "commit", "-q", "-m", f"{tag}: {len(ds)} images, validated", "--", *tracked)
    msg = (f"gemcurate dataset {tag}\n\n{len(ds)} images, {ds['label'].nunique()} classes; "
           + ", ".join(f"{s} {int((ds['split'] == s).sum())}" for s in manifest.SPLITS)
           + f"\nvalidation passed ({validation.get('dataset_images')} images)")
    _git(root, "tag", "-a", tag, "-m", msg)
    commit = _run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    pushed = False
    if params.publish.push:
        _run([*dvc_cmd(), "push", "-q", "-r", params.publish.remote], root)
        pushed = True
    logger.info("published %s at %s (%d images)", tag, commit[:10], len(ds))
    return Published(tag, commit, len(ds), d / "dataset" / "README.md", pushed)


def pull(version: str, out: Path, repo: str | None = None, prefix: str = "dataset/v",
         path: str = "data/dataset") -> int:
    """Fetch a published dataset version into ``out`` (``dvc get``) and verify it.

    Args:
        version: ``2026.11.22`` or a full tag ``dataset/v2026.11.22``.
        out: Target folder (must not exist yet).
        repo: Git URL or path of the gemcurate repository (default: this one).

    Returns:
        Images verified.
    """
    tag = version if version.startswith(prefix) else prefix + version.lstrip("v")
    repo = repo or str(repo_root())
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PublishError(f"{out} exists and is not empty")
    if out.exists():
        out.rmdir()
    # run outside any repository: `dvc get` must read the tag from ``repo`` only
    res = _run([*dvc_cmd(), "get", repo, path, "--rev", tag, "-o", str(out)],
               Path(tempfile.gettempdir()), check=False)
    if res.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        raise PublishError(f"cannot get {tag} from {repo}: {(res.stderr or res.stdout).strip()[-1500:]}")
    return verify_dir(out, deep=True)
