"""The scrape stage against a real storefront process, measured with its ground truth."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
import yaml

from pipeline.core.config import load_params
from pipeline.core.manifest import read_manifest
from pipeline.stages.scrape import scrape
from pipeline.stages.scrape.site import load_site
from tests.helpers import JUNKY, REALDATA, ROOT, catalog_options, truth_for

BROKEN = {"corrupt": "corrupt", "html": "not_an_image", "oversized": "too_many_pixels"}


def by_path(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(u=df["source_url"].map(lambda u: urlsplit(u).path)).set_index("u")


def check_against_truth(df: pd.DataFrame, truth: dict, data_dir: Path) -> None:
    rows = by_path(df)
    valid = [im for im in truth["images"] if im["junk"] not in BROKEN]
    got = [im for im in valid if im["url"] in rows.index and pd.isna(rows.loc[im["url"],
                                                                              "excluded_reason"])]
    assert len(got) >= 0.99 * len(valid), f"fetched {len(got)} of {len(valid)} valid images"
    for im in truth["images"]:
        r = rows.loc[im["url"]]
        assert r["label"] == im["label"] and r["product_id"] == im["product_id"]
        if im["junk"] in BROKEN:
            assert r["excluded_reason"] == BROKEN[im["junk"]], (im, r["excluded_detail"])
            assert isinstance(r["excluded_detail"], str) and r["excluded_detail"]
        if pd.notna(r["path"]):
            data = (data_dir / "store" / r["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == r["image_id"]
    assert len(rows) == len(truth["images"])


@pytest.mark.slow
def test_scrape_fetches_the_catalog_and_rejects_every_bad_file(storefront, params_for, tmp_path):
    store = storefront(*JUNKY, "--faults", "0.05", "--rate-limit", "100")
    # a careless adapter that follows every link of the home page (cart, search, account):
    # robots.txt must keep the crawler off the disallowed ones
    site = yaml.safe_load((ROOT / "sites" / "demo.yaml").read_text())
    site["category_links"] = "a::attr(href)"
    (tmp_path / "greedy.yaml").write_text(yaml.safe_dump(site))
    params = params_for(site=str(tmp_path / "greedy.yaml"), max_rate=200.0, backoff_base_s=0.05)
    res = scrape(params, base_url=store.base_url)
    assert res.status == "complete", res.message
    df = read_manifest(res.manifest_path)
    check_against_truth(df, truth_for(JUNKY), tmp_path / "data")
    stats = store.stats()
    assert stats["bans"] == 0 and stats["robots_violations"] == 0
    assert res.stats["disallowed_skipped"] >= 3
    assert sum(stats["faults"].values()) > 0 and res.stats["retries"] > 0
    assert set(df["change"]) == {"added"} and set(df["status"]) == {"active"}
    assert df["attr_price"].notna().mean() > 0.99


@pytest.mark.slow
def test_retry_after_is_honoured_without_a_ban(storefront, params_for):
    store = storefront("--classes", "1", "--products-per-class", "3", "--faults", "0",
                       "--rate-limit", "6", "--burst", "2", "--ban-strikes", "4")
    # ignore robots.txt's Crawl-delay on purpose: the store must push back with 429s
    params = params_for(respect_robots=False, default_rate=30.0, max_rate=30.0, concurrency=2)
    res = scrape(params, base_url=store.base_url)
    stats = store.stats()
    assert stats["rate_limited"] > 0 and res.stats["rate_limited_429"] == stats["rate_limited"]
    assert stats["bans"] == 0 and res.status == "complete"
    assert res.stats["slowdowns"] > 0


@pytest.mark.slow
def test_a_ban_stops_the_crawl_cleanly_and_a_rerun_resumes(storefront, params_for):
    import threading

    store = storefront("--classes", "2", "--products-per-class", "6", "--faults", "0",
                       "--rate-limit", "10", "--burst", "2", "--ban-strikes", "2",
                       "--ban-seconds", "3")
    params = params_for()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=scrape(params, base_url=store.base_url)))
    t.start()
    while store.stats()["images_served"] < 5:
        time.sleep(0.05)
    # another client behind the same address ignores the 429s and gets the address banned
    while store.get("/")[0] != 403:
        pass
    t.join(60)
    res = result["r"]
    assert res.status == "banned" and res.exit_code == 3 and "banned" in res.message
    assert res.manifest_path is None
    requests_at_stop = store.stats()["requests"]
    time.sleep(0.5)
    assert store.stats()["requests"] == requests_at_stop  # it really stopped, no hammering
    time.sleep(3.0)
    res2 = scrape(params, base_url=store.base_url)
    assert res2.resumed and res2.status == "complete" and res2.run_id == res.run_id
    assert store.stats()["image_urls_served_more_than_once"] == []


@pytest.mark.slow
def test_resume_after_sigkill_downloads_nothing_committed_twice(storefront, tmp_path):
    """A kill loses at most the downloads in flight: an image whose response the store
    had sent but whose bytes were not yet committed is fetched again (at-least-once; no
    crawler can tell it had it), never one the crawl state holds, and never more of them
    than ``scrape.concurrency`` allows in flight."""
    args = ["--seed", "4", "--classes", "2", "--products-per-class", "8", "--faults", "0.02",
            "--rate-limit", "12"]
    store = storefront(*args)
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "pipeline", "scrape", "--base-url", store.base_url,
           "--data-dir", str(data), "--no-progress"]
    total = len(truth_for(args)["images"])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    db = data / "state" / "crawl.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as c:
                    done = c.execute("select count(*) from images where sha256 is not null"
                                     ).fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= total // 2:
                break
        time.sleep(0.01)
    assert proc.poll() is None, "scrape finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (data / "manifests" / "raw.parquet").exists()
    with sqlite3.connect(db, timeout=5) as c:
        committed = {urlsplit(u).path for (u,) in c.execute(
            "select url from images where sha256 is not null")}
    assert len(committed) >= total // 2
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "complete (resumed)" in out.stdout
    stats = store.stats()
    again = set(stats["image_urls_served_more_than_once"])
    assert not again & committed  # nothing the state held was downloaded again
    assert len(again) <= load_params(ROOT / "params.yaml").scrape.concurrency  # only the ones in flight
    assert stats["images_served_per_url_count"] == ({"1": total} if not again else
                                                    {"1": total - len(again), "2": len(again)})
    df = read_manifest(data / "manifests" / "raw.parquet")
    assert len(df) == total and df["excluded_reason"].isna().sum() >= 0.9 * total


@pytest.mark.slow
@pytest.mark.parametrize("full_refresh_every", [1, 8])
def test_refresh_after_an_epoch_change_is_incremental(storefront, params_for, tmp_path,
                                                      full_refresh_every):
    """1: the refresh is a full pass (conditional GETs for everything); 8: an incremental one."""
    base = ["--seed", "3", "--classes", "3", "--products-per-class", "12", "--faults", "0",
            "--rate-limit", "200"]
    s0 = storefront(*base)
    port = urlsplit(s0.base_url).port
    params = params_for(max_rate=300.0, full_refresh_every=full_refresh_every)
    r0 = scrape(params, base_url=s0.base_url)
    assert r0.status == "complete"
    s0.stop()
    s1 = storefront(*base, "--epoch", "1", port=port)
    r1 = scrape(params, base_url=s1.base_url)
    assert r1.status == "complete" and r1.run_id == r0.run_id + 1
    t0, t1 = truth_for(base), truth_for([*base, "--epoch", "1"])
    e0 = {im["url"]: im["etag"] for im in t0["images"]}
    e1 = {im["url"]: im["etag"] for im in t1["images"]}
    new = {u for u in e1 if u not in e0}
    changed = {u for u in e1 if u in e0 and e0[u] != e1[u]}
    unchanged = {u for u in e1 if u in e0 and e0[u] == e1[u]}
    removed = set(e0) - set(e1)
    assert new and changed and removed
    stats = s1.stats()
    assert stats["images_served"] == len(new) + len(changed)  # only new or changed bytes
    if full_refresh_every == 1:
        assert r1.stats["pages_304"] > 0  # ETags are kept (the header is case-insensitive)
        assert r1.stats["full_pass"] and r1.stats["images_skipped"] == 0
        assert r1.stats["images_304"] == len(unchanged)
    else:
        # products with the same sitemap lastmod keep their images without a request; the
        # other images of a product that changed are revalidated
        assert not r1.stats["full_pass"] and r1.stats["products_skipped"] > 0
        assert r1.stats["images_304"] + r1.stats["images_skipped"] == len(unchanged)
        assert r1.stats["images_skipped"] > r1.stats["images_304"]
        assert stats["by_kind"].get("product", 0) < len(t1["products"]) / 2
    df = by_path(read_manifest(r1.manifest_path))
    assert {u for u in df.index if df.loc[u, "change"] == "added"} == new
    changed_rows = {u for u in df.index if df.loc[u, "change"] == "changed"}
    # a re-shot broken file has the same bytes (it is not re-rendered): unchanged is right
    assert changed_rows <= changed and len(changed_rows) >= 0.8 * len(changed)
    assert {u for u in df.index if df.loc[u, "change"] == "removed"} == removed
    assert (df.loc[list(removed), "status"] == "removed").all()
    p0 = {p["product_id"] for p in t0["products"]}
    p1 = {p["product_id"] for p in t1["products"]}
    assert r1.stats["products_removed"] == len(p0 - p1)
    assert r1.stats["products_added"] == len(p1 - p0)


def test_folder_mode_is_scraped_completely(storefront, params_for, image_folder, tmp_path):
    args = ["--catalog", str(image_folder / "catalog"), "--junk",
            f"certificate={image_folder / 'certificate'}", "--junk", f"hand={image_folder / 'hand'}",
            "--faults", "0", "--rate-limit", "200"]
    store = storefront(*args)
    res = scrape(params_for(max_rate=300.0), base_url=store.base_url)
    assert res.status == "complete"
    df = read_manifest(res.manifest_path)
    check_against_truth(df, truth_for(args), tmp_path / "data")
    assert df["excluded_reason"].isna().all()
    assert set(df["format"]) == {"JPEG", "PNG"}  # sniffed, whatever the extension says


@pytest.mark.slow
@pytest.mark.skipif(not (REALDATA / "jewelry").is_dir(), reason="../shared/realdata not present")
def test_realdata_jewelry_folder_is_scraped_completely(storefront, params_for, tmp_path):
    args = ["--catalog", str(REALDATA / "jewelry"), "--junk",
            f"certificate={REALDATA / 'documents'}", "--junk", f"hand={REALDATA / 'hands'}",
            "--faults", "0.02", "--rate-limit", "150"]
    store = storefront(*args)
    res = scrape(params_for(max_rate=200.0, backoff_base_s=0.05), base_url=store.base_url)
    assert res.status == "complete"
    truth = truth_for(args)
    df = read_manifest(res.manifest_path)
    assert len(df) == len(truth["images"]) == 400 + 25 + 100
    usable = df["excluded_reason"].isna()
    assert usable.sum() >= 0.99 * len(df), df.loc[~usable, "excluded_detail"].tolist()


def _postgres_url() -> str | None:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", connect_timeout=2):
            return "postgresql+psycopg://postgres@127.0.0.1/test"
    except Exception:
        return None


@pytest.mark.postgres
def test_crawl_state_in_postgresql(storefront, params_for, tmp_path):
    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    import sqlalchemy as sa

    from pipeline.stages.scrape import state as st

    engine = sa.create_engine(url)
    st.meta.drop_all(engine)
    try:
        store = storefront("--classes", "2", "--products-per-class", "3", "--faults", "0",
                           "--rate-limit", "200")
        params = params_for(max_rate=300.0)
        from pipeline.core.config import load_params

        params = load_params(ROOT / "params.yaml", {"data": {"data_dir": str(tmp_path / "d"),
                                                             "state_db": url},
                                                    "scrape": {"progress": False, "max_rate": 300.0,
                                                               "site": str(ROOT / "sites/demo.yaml")}})
        res = scrape(params, base_url=store.base_url)
        assert res.status == "complete"
        with engine.connect() as c:
            n = c.execute(sa.text("select count(*) from images")).scalar()
        assert n == len(read_manifest(res.manifest_path)) > 0
        res2 = scrape(params, base_url=store.base_url)  # a refresh: nothing changed
        assert res2.stats["images_downloaded"] == 0
        assert res2.stats["images_304"] + res2.stats["images_skipped"] == n
    finally:
        st.meta.drop_all(engine)
        engine.dispose()


def test_site_adapter_base_url_override():
    s = load_site(ROOT / "sites" / "demo.yaml", "http://127.0.0.1:1234")
    assert s.base_url == "http://127.0.0.1:1234"


@pytest.mark.slow
def test_a_jewelry_store_is_scraped_with_its_material_colour_and_stone(storefront, params_for):
    """``store serve --kind jewelry`` with the project's site YAML: every product's page
    attributes land in the manifest as the store wrote them, and they make jewelry captions
    (complete for a piece set with a stone; partial, naming the stone, for a watch)."""
    from pipeline.core import captions
    from pipeline.demo.catalog import Catalog

    args = ["--kind", "jewelry", "--seed", "4", "--classes", "5", "--products-per-class", "3",
            "--faults", "0", "--rate-limit", "500", "--burst", "100"]
    store = storefront(*args)
    res = scrape(params_for(max_rate=400.0, default_rate=400.0), base_url=store.base_url)
    assert res.status == "complete", res.message
    df = read_manifest(res.manifest_path)
    truth = Catalog.build(catalog_options(args)).products
    assert set(df["product_id"]) == set(truth) and set(df["label"]) == {
        "ring", "necklace", "bracelet", "earrings", "watch"}
    for pid, rows in df.groupby("product_id"):
        attrs = truth[pid].attrs
        for name in ("material", "colour", "stone"):
            got = set(rows[f"attr_{name}"].dropna())
            assert got == ({attrs[name]} if name in attrs else set()), (pid, name, got)
        row = rows.iloc[0]
        level, partial, missing = captions.captions(
            captions.normalise(row.to_dict(), row["label"], kind="jewelry"), "jewelry")
        assert attrs["material"] in level["normal"] and row["label"].removesuffix("s") in level["basic"]
        assert partial == (row["label"] in ("bracelet", "watch"))
        assert missing == (["stone"] if partial else [])
