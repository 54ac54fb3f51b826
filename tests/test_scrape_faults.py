"""Faults around a scrape: a full disk, two scrapes into one data dir, params that would
switch politeness off, a site YAML that points at another host."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from pipeline.core.config import ConfigError, load_params
from pipeline.core.lock import DataDirBusy, data_dir_lock
from pipeline.core.manifest import read_manifest
from pipeline.stages.scrape import scrape
from pipeline.stages.scrape.site import load_site
from tests.helpers import JUNKY, ROOT, truth_for
from tests.hostile import Hostile


@pytest.mark.parametrize("text", ["scrape: {max_rate: .nan}", "scrape: {max_rate: .inf}",
                                  "scrape: {timeout_s: -.inf}", "crop: {margin: .nan}"])
def test_numbers_in_params_must_be_finite(tmp_path, text):
    f = tmp_path / "p.yaml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError, match="is not a finite number"):
        load_params(f)


def test_the_cli_refuses_a_nan_rate(tmp_path, capsys):
    from pipeline.interfaces.cli import main

    code = main(["scrape", "--params", str(ROOT / "params.yaml"), "--data-dir", str(tmp_path / "d"),
                 "--max-rate", "nan"])
    assert code == 2 and "scrape.max_rate: nan is not a finite number" in capsys.readouterr().err


@pytest.mark.parametrize(("patch", "message"), [
    ({"start_urls": ["http://127.0.0.2:9/"]}, "is not on 127.0.0.1:8000"),
    ({"start_urls": ["ftp://127.0.0.1:8000/"]}, "is not on"),
    ({"allowed_hosts": ["cdn.example.com/path"]}, "is not a host name"),
])
def test_a_site_cannot_send_the_crawl_to_another_host(tmp_path, patch, message):
    site = yaml.safe_load((ROOT / "sites" / "demo.yaml").read_text())
    site.update(patch)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(site))
    with pytest.raises(ConfigError, match=message):
        load_site(tmp_path / "s.yaml")


def test_one_writer_per_data_dir_and_the_message_names_the_holder(tmp_path):
    busy = pytest.raises(DataDirBusy, match=r"in use by `gemcurate scrape \(demo\)` \(pid \d+")
    with data_dir_lock(tmp_path, "gemcurate scrape (demo)"), busy, \
            data_dir_lock(tmp_path, "gemcurate dedupe"):
        pass
    with data_dir_lock(tmp_path, "gemcurate dedupe"):  # released on exit
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = ("import time, sys; from pipeline.core.lock import data_dir_lock\n"
            f"with data_dir_lock({str(tmp_path)!r}, 'holder'):\n"
            "    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(DataDirBusy, match="`holder`"), data_dir_lock(tmp_path, "second"):
        pass
    proc.kill()
    proc.wait()
    with data_dir_lock(tmp_path, "after a SIGKILL"):
        pass


def test_two_scrapes_into_one_data_dir_do_not_both_crawl(params_for):
    params = params_for(max_rate=20.0, default_rate=20.0)
    with Hostile() as store:
        results = {}

        def run(name):
            try:
                results[name] = scrape(params, base_url=store.base_url)
            except DataDirBusy as exc:
                results[name] = exc

        threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
            time.sleep(0.2)
        for t in threads:
            t.join(60)
        served = sum(store.hits.values())
    busy = [r for r in results.values() if isinstance(r, DataDirBusy)]
    done = [r for r in results.values() if not isinstance(r, DataDirBusy)]
    assert len(busy) == 1 and len(done) == 1 and done[0].status == "complete"
    assert "in use by `gemcurate scrape (demo)`" in str(busy[0])
    assert served <= 20  # one crawl's requests (robots, 7 pages, 8 images), not two


def test_a_full_disk_stops_the_scrape_with_a_message_and_a_rerun_resumes(params_for, monkeypatch):
    """Simulated: the image store refuses writes after a few images (ENOSPC)."""
    from pipeline.core import blobstore

    real_put = blobstore.BlobStore.put
    calls = {"n": 0}

    def put(self, data, ext, sha=None):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_put(self, data, ext, sha)

    params = params_for(max_rate=200.0, default_rate=200.0)
    with Hostile() as store:
        monkeypatch.setattr(blobstore.BlobStore, "put", put)
        t = time.monotonic()
        res = scrape(params, base_url=store.base_url)
        assert time.monotonic() - t < 30  # ends, never hangs
        assert res.status == "stopped" and res.exit_code == 5
        assert "disk full" in res.message and "rerun to resume" in res.message
        monkeypatch.setattr(blobstore.BlobStore, "put", real_put)
        again = scrape(params, base_url=store.base_url)
        assert again.status == "complete" and again.resumed
        df = read_manifest(again.manifest_path)
        assert len(df) == 8 and df["excluded_reason"].isna().all()
        # the 3 stored before the fault were not fetched again; those in flight once more
        twice = [k for k, v in store.hits.items() if k.startswith("/cdn/") and v > 1]
        assert len(twice) <= 4, store.hits


@pytest.mark.slow
def test_a_really_full_disk_stops_and_resumes_after_space_is_freed(storefront, tmp_path):
    """On a 12 MB tmpfs: the state database and the image store run out of space."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = storefront(*JUNKY, "--faults", "0", "--rate-limit", "1000", "--burst", "200")
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                "from tests.helpers import params\nfrom pipeline.stages.scrape import scrape\n"
                f"p = params({str(mnt / 'data')!r}, scrape={{'max_rate': 500.0, 'default_rate': 500.0,"
                f" 'progress': False, 'site': {str(ROOT / 'sites' / 'demo.yaml')!r}}})\n"
                f"r = scrape(p, base_url={store.base_url!r}); print(r.status); print(r.message)")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             cwd=ROOT)
        assert res.stdout.count("\n") >= 2, res.stdout + res.stderr[-3000:]
        status, message = res.stdout.strip().splitlines()[:2]
        assert status == "stopped" and "is the disk full?" in message, res.stdout + res.stderr[-2000:]
        subprocess.run(["mount", "-o", "remount,size=400m", str(mnt)], check=True)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             cwd=ROOT)
        assert res.stdout.startswith("complete"), res.stdout + res.stderr[-2000:]
        df = read_manifest(mnt / "data" / "manifests" / "raw.parquet")
        truth = truth_for(JUNKY)
        assert len(df) == len(truth["images"])
        # downloaded twice: at most the few in flight when the disk filled (never stored)
        assert len(store.stats()["image_urls_served_more_than_once"]) <= 4
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
