"""Model-assisted review in a real browser: a store that lists photos under the wrong gem,
curated up to the labels stage; an annotator opens the surest label issue and relabels it
to the model's suggestion with key 1, and the next run applies it. (A module of its own, so
it runs beside tests/e2e/test_review_browser.py on another worker.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pandas as pd
import pytest

from pipeline.demo import process
from tests.e2e.test_review_browser import CHROMIUM, PASSWORD, press, sh, shown_id, sync_api
from tests.helpers import BIN, ROOT, project_repo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mislabelled(tmp_path_factory):
    """A store whose folders list two photos under the wrong gem: scraped, then
    ``dvc repro labels``; the moved photos' ids and true classes."""
    from pipeline.demo.catalog import rng_for
    from pipeline.synthetic import gems
    from tests.helpers import encode

    tmp = tmp_path_factory.mktemp("labels")
    classes = list(gems.GEM_CLASSES)[:3]
    moved: dict[str, str] = {}
    for c, cls in enumerate(classes):
        for i in range(16):
            img = gems.draw_gem(gems.plan_gem(rng_for(5, "mislabel", cls, i), cls))
            data = encode(img, "JPEG", 90)
            listed = classes[(c + 1) % 3] if i < 1 else cls  # one photo of each class elsewhere
            if listed != cls:
                moved[hashlib.sha256(data).hexdigest()] = cls
            f = tmp / "catalog" / listed / f"{cls}-{i}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
    repo = project_repo(tmp / "repo", tmp / "remote")
    with process.storefront(["--catalog", str(tmp / "catalog"), "--rate-limit", "1000", "--burst", "200",
                             "--faults", "0"], cwd=ROOT) as store:
        sh([sys.executable, "-m", "pipeline", "scrape", "--base-url", store.base_url], repo)
    sh([str(BIN / "dvc"), "repro", "labels"], repo)
    sh([sys.executable, "-m", "pipeline", "review", "add-user", "ana", "--role", "annotator",
        "--password-stdin"], repo, stdin=PASSWORD + "\n")
    return repo, moved


def test_an_annotator_relabels_a_label_issue_to_the_models_suggestion_with_key_1(mislabelled, tmp_path):
    repo, moved = mislabelled
    lab = pd.read_parquet(repo / "data" / "manifests" / "labels.parquet")
    flagged = lab[lab["label_issue"].fillna(False).astype(bool)]
    found = set(flagged["image_id"]) & set(moved)
    assert found, (flagged[["label", "label_suggestion", "label_quality"]], moved)
    # the probe's suggestion for a moved photo is the gem it shows
    assert all(flagged.set_index("image_id").loc[i, "label_suggestion"] == moved[i] for i in found)
    port_file = tmp_path / "port"
    log = open(tmp_path / "review.log", "wb")  # noqa: SIM115 (the process owns it)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "review", "serve", "--port", "0",
                             "--port-file", str(port_file)], cwd=repo, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "review.log").read_text()
            time.sleep(0.2)
        server = f"http://127.0.0.1:{port_file.read_text()}"
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(server + "/login?next=/%3Freason%3Dlabel_issue")
            page.wait_for_function("document.activeElement && document.activeElement.name === 'name'")
            page.keyboard.type("ana")
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            press(page, "Enter")
            assert "reason=label_issue" in page.url
            press(page, "Enter")                      # the surest label issue
            shown = shown_id(page)
            info = json.loads(page.locator("#page-data").text_content())
            suggestion = flagged.set_index("image_id").loc[shown, "label_suggestion"]
            assert info["suggestions"][0] == suggestion
            assert page.locator("#model-top").count() == 1
            press(page, "1")                          # relabel to the model's suggestion
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    listed = sh([sys.executable, "-m", "pipeline", "decisions", "list"], repo).stdout
    assert shown in listed and "relabel" in listed and suggestion in listed, listed
    sh([str(BIN / "dvc"), "repro", "labels"], repo)   # the decision applied: no longer flagged
    after = pd.read_parquet(repo / "data" / "manifests" / "labels.parquet").drop_duplicates("image_id")
    row = after.set_index("image_id").loc[shown]
    assert row["label"] == suggestion and row["decision"] == "relabel" and not row["needs_review"]
