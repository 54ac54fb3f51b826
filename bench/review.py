"""Load test of the review app on loopback: N flagged images, real HTTP through waitress.

Times the queue page (unfiltered, filtered by reason, a later page), the image page and a
decision, with K sequential requests each after a warm-up, and prints p50/p95/max in ms.
Target (issue 15): p95 < 200 ms for the queue and image pages with 10,000 flagged images.

    .venv/bin/python -m bench.review --images 10000 --requests 200
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from pipeline.core import manifest
from pipeline.core.config import load_params
from pipeline.interfaces.review.accounts import AppDB, app_url
from pipeline.interfaces.review.app import create_app
from tests.helpers import crop_manifest

REASONS = ("hand", "certificate", "crop_cut_by_border", "label_conflict", "crop_several_objects")


def build(data: Path, n: int, seed: int = 0) -> list[str]:
    per_class = max(1, n // 20)
    df = crop_manifest(data, classes=20, products=per_class, per_product=1, write_images=False)
    rng = np.random.default_rng(seed)
    df = df.iloc[:n].copy()
    df["needs_review"] = True
    df["review_reason"] = [REASONS[i] for i in rng.integers(0, len(REASONS), len(df))]
    df["hand_score"] = rng.random(len(df))
    df["certificate_score"] = rng.random(len(df))
    df["crop_confidence"] = rng.random(len(df))
    manifest.write_manifest(manifest.conform(df, "crop"), manifest.manifest_path(data, "crop"))
    return df["image_id"].tolist()


def timed(opener, url: str, data: bytes | None = None, headers: dict | None = None) -> float:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    t = time.perf_counter()
    with opener.open(req, timeout=30) as r:
        r.read()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=200)
    a = ap.parse_args()
    from waitress.server import create_server

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        ids = build(data, a.images)
        print(f"{len(ids):,} flagged images written in {time.perf_counter() - t0:.1f} s")
        params = load_params(None, {"data": {"data_dir": str(data)}})
        AppDB(app_url(None, data)).add_user("bench", "annotator", "bench password 1")
        app = create_app(params, data)
        sock = socket.create_server(("127.0.0.1", 0))
        server = create_server(app, sockets=[sock], threads=8)
        threading.Thread(target=server.run, daemon=True).start()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        html = opener.open(base + "/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        opener.open(base + "/login", data=urllib.parse.urlencode(
            {"name": "bench", "password": "bench password 1", "csrf_token": token}).encode())
        page = opener.open(base + "/").read().decode()
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        rng = np.random.default_rng(1)
        cases = {
            "queue": lambda i: base + "/",
            "queue ?reason=hand": lambda i: base + "/?reason=hand",
            "queue page 50": lambda i: base + "/?page=50",
            "image": lambda i: f"{base}/image/{ids[int(rng.integers(len(ids)))]}",
            "image ?reason=hand": lambda i: f"{base}/image/{ids[int(rng.integers(len(ids)))]}?reason=hand",
        }
        print(f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for name, url in cases.items():
            for i in range(5):
                timed(opener, url(i))
            ms = [timed(opener, url(i)) for i in range(a.requests)]
            print(f"{name:<22} {np.percentile(ms, 50):8.1f} {np.percentile(ms, 95):8.1f} {max(ms):8.1f}")
        ms = []
        for k in range(min(a.requests, len(ids))):
            body = json.dumps({"image_id": ids[k], "action": "accept", "expect": 0}).encode()
            ms.append(timed(opener, base + "/api/decide", body,
                            {"Content-Type": "application/json", "X-CSRFToken": csrf}))
        p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
        print(f"{'decide (POST)':<22} {p50:8.1f} {p95:8.1f} {max(ms):8.1f}")
        print(f"after {len(ms)} decisions:")
        for name in ("queue", "image"):
            got = [timed(opener, cases[name](i)) for i in range(a.requests)]
            print(f"{name:<22} {np.percentile(got, 50):8.1f} {np.percentile(got, 95):8.1f} {max(got):8.1f}")
        server.close()


if __name__ == "__main__":
    main()
