"""Shared fixtures: a real storefront process on an ephemeral port, params in tmp dirs,
synthetic images and a corrupt-file set."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config import load_params
from pipeline.store.catalog import Catalog, CatalogOptions

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
# A small catalog holding every kind of junk image (test_store checks that it does).
JUNKY = ["--seed", "1", "--classes", "3", "--products-per-class", "8", "--junk-scale", "10"]


@dataclass
class Store:
    """A running storefront process."""

    proc: subprocess.Popen
    base_url: str
    args: list[str]
    log: Path

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.base_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def stats(self) -> dict:
        return json.loads(self.get("/_stats")[2])

    def reset_stats(self) -> None:
        req = urllib.request.Request(self.base_url + "/_stats/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def catalog_options(args: list[str]) -> CatalogOptions:
    """The CatalogOptions the CLI builds from ``args`` (for computing the truth in-process)."""
    from pipeline.cli import _catalog_options, build_parser

    ns, _ = build_parser().parse_known_args(["store", "truth", "--out", "-", *args])
    return _catalog_options(ns)


def truth_for(args: list[str]) -> dict:
    return Catalog.build(catalog_options(args)).truth()


@pytest.fixture(scope="session")
def render_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("render-cache")


@pytest.fixture
def storefront(tmp_path, render_cache):
    """Factory: ``storefront(*flags)`` starts ``gemcurate store serve`` on a free port."""
    started: list[Store] = []

    def start(*flags: str, port: int = 0) -> Store:
        port_file = tmp_path / f"port-{len(started)}"
        log = tmp_path / f"store-{len(started)}.log"
        args = [str(f) for f in flags]
        cmd = [sys.executable, "-m", "pipeline.cli", "store", "serve", "--port", str(port),
               "--port-file", str(port_file), "--cache-dir", str(render_cache), *args]
        proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"storefront did not start: {log.read_text()}")
            time.sleep(0.05)
        store = Store(proc, f"http://127.0.0.1:{port_file.read_text().strip()}", args, log)
        started.append(store)
        return store

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def params_for(tmp_path):
    """Factory: validated Params with data under tmp_path and scrape overrides."""

    def make(data_dir: Path | None = None, **scrape) -> object:
        scrape.setdefault("progress", False)
        return load_params(ROOT / "params.yaml", {
            "data": {"data_dir": str(data_dir or tmp_path / "data")},
            "scrape": {"site": str(ROOT / "sites" / "demo.yaml"), **scrape},
        })

    return make


def jpeg_bytes(w: int = 320, h: int = 240, seed: int = 0, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A labelled folder tree <class>/<images> plus junk folders, all synthetic."""
    root = tmp_path / "folder"
    for ci, cls in enumerate(["rings", "necklace", "bracelet"]):
        d = root / "catalog" / cls
        d.mkdir(parents=True)
        for i in range(7):
            fmt = "PNG" if i == 3 else "JPEG"
            # a wrong extension on purpose, as in real data sets
            (d / f"{cls}_{i}.jpg").write_bytes(jpeg_bytes(200 + 10 * i, 180, seed=ci * 100 + i,
                                                          fmt=fmt))
    for kind in ("certificate", "hand"):
        d = root / kind
        d.mkdir()
        for i in range(3):
            (d / f"{kind}{i}.jpg").write_bytes(jpeg_bytes(300, 400, seed=1000 + i + 10 * len(kind)))
    return root


def pytest_collection_modifyitems(config, items):
    if os.environ.get("GEMCURATE_SKIP_SLOW"):
        skip = pytest.mark.skip(reason="GEMCURATE_SKIP_SLOW set")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


def crop_manifest(data_dir: Path, classes: int = 4, products: int = 12, per_product: int = 3,
                  seed: int = 0, size: int = 224, write_images: bool = True,
                  prefix: str = "") -> pd.DataFrame:
    """A crop-stage manifest with real square crops on disk (a disc on a plain background).

    Image ids are sha256 hex of a name; every product has ``per_product`` photos;
    ``dup_cluster`` is each image's own id (callers link products by editing it).
    """
    import hashlib

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
                    "dhash": "0", "ocr_text_boxes": None, "decision": None, "decided_by": None,
                    "decided_at": None, "crop_box": [0, 0, size, size],
                    "object_box": [m, m, size - m, size - m], "crop_confidence": 0.9,
                    "crop_issue": "none", "crop_path": rel, "background_rgb": list(bg),
                    "needs_review": False, "review_reason": None,
                    "is_certificate": False, "certificate_score": 0.0, "is_hand": False,
                    "hand_score": 0.0,
                })
    return pd.DataFrame(rows)
