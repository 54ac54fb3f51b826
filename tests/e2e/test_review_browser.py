"""The review app as an annotator uses it: a real Chromium (Debian's, through Playwright) on
`gemcurate review serve` over a project the pipeline curated from the demo storefront.
Log in, review five images with the keyboard alone (accept, reject, relabel, accept + undo,
next), then `dvc repro export` and check the new dataset holds exactly those decisions.

Screenshots of the queue and the image view are saved under the test's folder, and also
into ``$GEMCURATE_SCREENSHOTS`` when set (the README's pictures come from there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.demo import process
from tests.helpers import BIN, ROOT, project_repo, run

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is needed (apt install chromium)", allow_module_level=True)
pytestmark = pytest.mark.slow

STORE = ["--seed", "3", "--classes", "4", "--products-per-class", "10", "--rate-limit", "1000",
         "--burst", "200", "--faults", "0"]
PASSWORD = "annotator password 1"


def sh(cmd: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run(cmd, cwd, stdin=stdin)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    repo = project_repo(tmp / "repo", tmp / "remote", augment={"target_per_class": 30})
    with process.storefront(STORE, cwd=ROOT) as store:
        sh([sys.executable, "-m", "pipeline", "scrape", "--base-url", store.base_url], repo)
    sh([str(BIN / "dvc"), "repro", "export"], repo)
    sh([sys.executable, "-m", "pipeline", "review", "add-user", "ana", "--role", "annotator",
        "--password-stdin"], repo, stdin=PASSWORD + "\n")
    return repo


@pytest.fixture
def server(project, tmp_path):
    port_file = tmp_path / "port"
    log = open(tmp_path / "review.log", "wb")  # noqa: SIM115 (the process owns it)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "review", "serve", "--port", "0",
                             "--port-file", str(port_file)], cwd=project, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "review.log").read_text()
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port_file.read_text()}"
    proc.terminate()
    proc.wait(timeout=30)


def shown_id(page) -> str:
    return json.loads(page.locator("#page-data").text_content())["image_id"]


def press(page, *keys: str) -> None:
    """Keys that lead to another page: wait for it to load."""
    with page.expect_navigation():
        for k in keys:
            page.keyboard.press(k)


def test_an_annotator_reviews_five_images_by_keyboard_and_the_dataset_follows(project, server, tmp_path):
    # one photo can be listed by several products (the same bytes, one image_id): the queue
    # and decisions are per image_id, the manifest has a row per listing
    before = pd.read_parquet(project / "data" / "manifests" / "crop.parquet")
    queued = before.loc[before["needs_review"].fillna(False), "image_id"].nunique()
    assert queued >= 5, before["review_reason"].value_counts()
    shots = [tmp_path / "review-queue.png", tmp_path / "review-image.png"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(server + "/")
        assert "/login" in page.url
        # the keyboard goes where the focus is: wait for the page's autofocus (on a loaded
        # machine the first keys could land before it, and the login fail)
        page.wait_for_function("document.activeElement && document.activeElement.name === 'name'")
        page.keyboard.type("ana")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        press(page, "Enter")
        assert "/login" not in page.url, page.content()[:2000]
        assert page.locator("#left").text_content(timeout=90_000) == str(queued)
        page.screenshot(path=str(shots[0]), full_page=False)
        press(page, "Enter")                        # open the first (selected) image
        page.screenshot(path=str(shots[1]), full_page=False)

        done: dict[str, tuple] = {}
        a = shown_id(page)
        press(page, "a")                            # accept
        done[a] = ("accept",)
        b = shown_id(page)
        page.keyboard.press("r")                    # reject …
        press(page, "d")                            # … as a duplicate
        done[b] = ("reject", "duplicate")
        c = shown_id(page)
        suggestion = json.loads(page.locator("#page-data").text_content())["suggestions"][0]
        if suggestion in set(before.loc[before["image_id"] == c, "label"]):
            suggestion = json.loads(page.locator("#page-data").text_content())["suggestions"][1]
            press(page, "2")
        else:
            press(page, "1")                        # relabel to the first suggestion
        done[c] = ("relabel", suggestion)
        d = shown_id(page)
        press(page, "a")                            # accept …
        assert shown_id(page) != d
        press(page, "u")                            # … and undo: back on d, nothing in force
        assert shown_id(page) == d
        assert page.locator(".history tr").count() == 3   # header, accept, revoke
        press(page, "j")                            # next without deciding
        e = shown_id(page)
        assert e != d
        press(page, "a")
        done[e] = ("accept",)
        page.goto(server + "/")
        assert page.locator("#left").text_content() == str(queued - 4)
        browser.close()
    assert not errors, errors
    for s in shots:
        assert s.stat().st_size > 10_000
        if os.environ.get("GEMCURATE_SCREENSHOTS"):
            shutil.copy(s, Path(os.environ["GEMCURATE_SCREENSHOTS"]) / s.name)

    out = sh([str(BIN / "dvc"), "repro", "export"], project).stdout
    assert "Running stage 'dedupe'" in out  # the decisions DB is a dependency: curation reruns
    card = (project / "data" / "dataset" / "README.md").read_text()
    assert "annotator decisions applied: **4** (accept 2, reject 1, relabel 1)" in card, card[:1500]
    crop = pd.read_parquet(project / "data" / "manifests" / "crop.parquet")
    ds = pd.read_parquet(project / "data" / "dataset" / "manifest.parquet")
    originals = ds[ds["parent_id"].isna()]

    def rows(df: pd.DataFrame, x: str) -> pd.DataFrame:
        return df[df["image_id"] == x]

    for x in (a, e):
        assert (rows(crop, x)["decision"] == "accept").all()
        assert rows(crop, x)["excluded_reason"].isin(["duplicate"]).where(
            rows(crop, x)["excluded_reason"].notna(), True).all(), rows(crop, x)["excluded_reason"]
    assert (rows(crop, b)["excluded_reason"] == "rejected_by_annotator").all()
    assert b not in set(originals["image_id"])
    assert (rows(crop, c)["label"] == done[c][1]).all()
    assert sorted(rows(crop, c)["label_original"]) == sorted(rows(before, c)["label"])
    assert (rows(originals, c)["label"] == done[c][1]).all()
    assert rows(crop, d)["decision"].isna().all()   # undone: the machine's verdict stands
    # every image in the dataset is a kept row of the curated manifest, with that row's label
    kept = crop[crop["excluded_reason"].isna()]
    assert set(originals["image_id"]) == set(kept["image_id"])
    labels = kept.drop_duplicates("image_id").set_index("image_id")["label"]
    assert (originals.set_index("image_id")["label"] == labels.loc[originals["image_id"]].values).all()
    # what entered the dataset came in through the decisions (or their duplicate clusters)
    was_kept = set(before.loc[before["excluded_reason"].isna(), "image_id"])
    touched = set(crop.loc[crop["dup_cluster"].isin(crop.loc[crop["image_id"].isin([a, c, e]),
                                                              "dup_cluster"]), "image_id"])
    assert set(originals["image_id"]) - was_kept <= touched
