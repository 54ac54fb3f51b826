"""Builders the tests share: paths, the junky catalog, its truth, synthetic images and
a crop-stage manifest with real crops on disk. Fixtures live in ``conftest.py``; tests
import plain helpers from here, never from ``conftest``."""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.core import manifest
from pipeline.core.config import load_params
from pipeline.demo.catalog import Catalog, CatalogOptions
from pipeline.demo.layouts import ground_truth
from pipeline.demo.options import catalog_options_from_args

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
# A small catalog holding every kind of junk image (test_storefront checks that it does).
JUNKY = ["--seed", "1", "--classes", "3", "--products-per-class", "8", "--junk-scale", "10"]


def catalog_options(args: list[str]) -> CatalogOptions:
    """The catalog ``gemcurate store serve ARGS`` serves (for computing its truth in-process)."""
    return catalog_options_from_args(args)


def truth_for(args: list[str]) -> dict:
    """The truth of the catalog ``store serve ARGS`` serves, with the URLs of its ``--layout``."""
    args = [str(a) for a in args]
    layout = args[args.index("--layout") + 1] if "--layout" in args else "demo"
    return ground_truth(Catalog.build(catalog_options(args)), layout)


def params(data_dir: str | Path | None = None, **sections: dict):
    """Validated Params: the project's params.yaml, data under ``data_dir``, sections merged."""
    over = {k: dict(v) for k, v in sections.items()}
    if data_dir is not None:
        over.setdefault("data", {})["data_dir"] = str(data_dir)
    return load_params(ROOT / "params.yaml", over)


def jpeg_bytes(w: int = 320, h: int = 240, seed: int = 0, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def crop_manifest(data_dir: Path, classes: int = 4, products: int = 12, per_product: int = 3,
                  seed: int = 0, size: int = 224, write_images: bool = True,
                  prefix: str = "") -> pd.DataFrame:
    """A crop-stage manifest with real square crops on disk (a disc on a plain background).

    Image ids are sha256 hex of a name; every product has ``per_product`` photos;
    ``dup_cluster`` is each image's own id (callers link products by editing it).
    """
    import cv2

    rng = np.random.default_rng(seed)
    rows = []
    for c in range(classes):
        label = f"class{c:02d}"
        for p in range(products):
            pid = f"{prefix}P{c:02d}-{p:03d}"
            for k in range(per_product):
                iid = hashlib.sha256(f"{pid}/{k}".encode()).hexdigest()
                rel = f"{iid[:2]}/{iid}.png"
                bg = tuple(int(v) for v in rng.integers(200, 256, 3))
                if write_images:
                    img = np.empty((size, size, 3), np.uint8)
                    img[:] = bg
                    colour = tuple(int(v) for v in rng.integers(0, 160, 3))
                    cv2.circle(img, (size // 2, size // 2), int(size * 0.4), colour, -1)
                    dest = data_dir / "crops" / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(dest), img[..., ::-1])
                m = round(size * 0.08 / 1.16)
                rows.append({
                    "image_id": iid, "path": f"{iid[:2]}/{iid[2:4]}/{iid}.jpg", "label": label,
                    "product_id": pid, "site": "demo", "source_url": f"http://127.0.0.1:8000/{pid}/{k}.jpg",
                    "product_url": f"http://127.0.0.1:8000/{pid}", "image_index": k,
                    "fetched_at": pd.Timestamp("2026-01-01", tz="UTC"), "width": size, "height": size,
                    "format": "JPEG", "n_bytes": 1000, "content_type": "image/jpeg", "etag": None,
                    "excluded_reason": None, "excluded_detail": None, "status": "active",
                    "change": "added", "first_seen_run": 1, "last_seen_run": 1,
                    "label_original": label, "dup_cluster": iid, "dup_size": 1,
                    "is_representative": True, "dup_of": None, "pixel_sha256": iid, "phash": "0",
                    "dhash": "0", "ocr_text_boxes": None, "head_certificate": None, "head_hand": None,
                    "pose_hand": None,
                    "decision": None, "decided_by": None,
                    "decided_at": None, "crop_box": [0, 0, size, size],
                    "object_box": [m, m, size - m, size - m], "crop_confidence": 0.9,
                    "crop_issue": "none", "crop_path": rel, "background_rgb": list(bg),
                    "needs_review": False, "review_reason": None,
                    "is_certificate": False, "certificate_score": 0.0, "is_hand": False,
                    "hand_score": 0.0,
                })
    return pd.DataFrame(rows)


def gem_photo(i: int, **over):
    """A generated product photo (RGB array) and its plan; ``over`` replaces plan fields."""
    from pipeline.demo.catalog import rng_for
    from pipeline.synthetic import gems

    classes = list(gems.GEM_CLASSES)
    plan = gems.plan_gem(rng_for(77, "unit", i), classes[i % len(classes)])
    if over:
        plan = gems.GemPlan(**{**plan.__dict__, **over})
    return gems.draw_gem(plan), plan


@functools.lru_cache(maxsize=64)
def photo_bytes(i: int, fmt: str = "JPEG") -> bytes:
    """:func:`gem_photo` ``i`` encoded (quality 90): drawn once per test process, as the
    same few photos serve many tests (drawing and encoding one is 30–70 ms)."""
    return encode(gem_photo(i)[0], fmt)


def encode(img: np.ndarray, fmt: str = "JPEG", q: int = 90) -> bytes:
    from pipeline.synthetic import junk

    return junk.encode(img, fmt, q)


def raw_manifest(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """Raw rows (image_id, label, product_id, width) with the other core columns filled in."""
    out = []
    for k, (iid, label, pid, w) in enumerate(rows):
        out.append({"image_id": iid, "path": f"{iid[:2]}/{iid[2:4]}/{iid}.jpg", "label": label,
                    "product_id": pid, "site": "demo", "source_url": f"http://127.0.0.1/{k}.jpg",
                    "product_url": f"http://127.0.0.1/{pid}", "image_index": k,
                    "fetched_at": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(seconds=k),
                    "width": w, "height": w, "format": "JPEG", "n_bytes": 1000,
                    "content_type": "image/jpeg", "etag": None, "excluded_reason": None,
                    "excluded_detail": None, "status": "active", "change": "added",
                    "first_seen_run": 1, "last_seen_run": 1})
    return manifest.conform(pd.DataFrame(out), "raw")


def stored_photos(tmp_path: Path, n: int = 3) -> pd.DataFrame:
    """``n`` generated photos and one truncated file in an image store, as a dedupe manifest."""
    from pipeline.core.blobstore import BlobStore

    store = BlobStore(tmp_path / "store")
    rows = []
    for k in range(n):
        iid, _ = store.put(photo_bytes(k), "jpg")
        rows.append((iid, "ruby", f"P{k}", 800))
    data = photo_bytes(9)
    iid, _ = store.put(data[: len(data) // 3], "jpg")
    rows.append((iid, "ruby", "PX", 800))
    df = raw_manifest(rows)
    df["needs_review"] = pd.array([False] * len(df), dtype="boolean")
    df["review_reason"] = pd.array([None] * len(df), dtype="string")
    return df


def copy_tree(dest: Path) -> None:
    """This working tree's tracked and untracked, not ignored, files copied to ``dest``."""
    import subprocess

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            (dest / f).write_bytes(src.read_bytes())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


BIN = Path(__import__("sys").executable).parent  # the venv's bin: dvc, airflow, gemcurate
GIT_ID = ["-c", "user.name=test", "-c", "user.email=test@localhost"]


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True, timeout: float = 900,
        stdin: str | None = None):
    """Run ``cmd`` with the venv's bin first on PATH; with ``check``, fail showing its output."""
    import os
    import subprocess

    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         input=stdin)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} → {res.returncode}\n"
                             f"stdout: {res.stdout[-6000:]}\nstderr: {res.stderr[-4000:]}")
    return res


FAST_SCRAPE = {"max_rate": 500.0, "default_rate": 500.0, "concurrency": 8, "progress": False,
               "backoff_base_s": 0.05}  # a dead link answering 500 is retried in 1.5 s, not 15


def project_repo(dest: Path, remote: Path | None, **sections: dict) -> Path:
    """This working tree as a new git repository at ``dest``: params sections updated
    (scrape at loopback speed by default), committed, the DVC remote at ``remote``."""
    import yaml

    copy_tree(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for name, values in {"scrape": FAST_SCRAPE, **sections}.items():
        params[name].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", *GIT_ID, "commit", "-qm", "init"], dest)
    if remote is not None:
        run([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(remote)], dest)
    return dest


def needs(*modules: str) -> None:
    """Skip the calling test module unless every one of ``modules`` is installed — without
    importing them: every xdist worker collects every module, and ``pytest.importorskip`` made
    each of them import TensorFlow (5 s) and Airflow (2.5 s) whether or not it ran a test that
    uses them. A module that is installed but fails to import is then an error, not a skip."""
    import importlib.util

    for name in modules:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed", allow_module_level=True)

