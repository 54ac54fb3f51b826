"""The whole pipeline through DVC, from a fresh repository: the README's main job, reruns,
a refresh, publish and pull on a second clone, and a planted leak that stops publish.

The repository under test is a copy of this working tree (tracked and untracked, not
ignored files) committed into a new git repository, with a DVC remote in a temp folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import project_repo

BIN = Path(sys.executable).parent
STORE = ["--seed", "3", "--classes", "4", "--products-per-class", "10", "--rate-limit", "1000",
         "--burst", "200", "--faults", "0"]
GIT_ID = ["-c", "user.name=test", "-c", "user.email=test@localhost"]

pytestmark = pytest.mark.slow


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and res.returncode != 0:
        summary = cwd / "data" / "validate" / "summary.txt"
        why = summary.read_text()[:3000] if summary.exists() else "(no validation summary)"
        raise AssertionError(f"{' '.join(cmd)} → {res.returncode}\n"
                             f"stderr: {res.stderr[-3000:]}\nvalidation: {why}\n"
                             f"stdout: {res.stdout[-2000:]}")
    return res


def gemcurate(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "pipeline", *args], cwd, check)


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([str(BIN / "dvc"), *args], cwd, check)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("dvc")
    return project_repo(tmp / "repo", tmp / "remote", augment={"target_per_class": 60})


def ran_stages(out: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", out))


def dataset(repo: Path) -> pd.DataFrame:
    return pd.read_parquet(repo / "data" / "dataset" / "manifest.parquet")


def test_main_job_from_a_fresh_repository(repo):
    res = gemcurate("demo", "--", *STORE, cwd=repo)
    assert "dataset card: " in res.stdout
    assert "published dataset/v" in res.stdout
    tags = sh(["git", "tag"], repo).stdout.split()
    assert len(tags) == 1 and re.fullmatch(r"dataset/v\d{4}\.\d{2}\.\d{2}", tags[0])
    card = (repo / "data" / "dataset" / "README.md").read_text()
    assert "validation: **passed**" in card
    ds = dataset(repo)
    # balanced train, leak-free, augmented only in train
    train = ds[ds["split"] == "train"]["label"].value_counts()
    assert ((train - 60).abs() <= 60 * 0.02).all(), train
    assert set(ds.loc[ds["parent_id"].notna(), "split"]) == {"train"}
    assert (ds.groupby("product_id")["split"].nunique() == 1).all()
    assert (ds.groupby("dup_cluster")["split"].nunique() == 1).all()
    # every image carries its product's attributes from the store's pages and three captions
    originals = ds[ds["parent_id"].isna()]
    attrs = originals["attributes"].map(json.loads)
    assert attrs.map(lambda a: {"colour", "cut", "carat", "origin", "stone", "title"} <= set(a)).all()
    assert (attrs.map(lambda a: a["stone"]) == originals["label"].str.replace("-", " ")).all()
    assert not ds["caption_partial"].any() and ds["caption_complete"].str.contains(" ct ").all()
    from pipeline import dataset as reader

    pytest.importorskip("tensorflow")
    got = {i.decode(): c.decode() for _, c, i in reader.load(
        repo / "data" / "dataset", "val", batch_size=None, target="caption", caption_level="basic",
        with_ids=True).as_numpy_iterator()}
    assert got == ds[ds["split"] == "val"].set_index("image_id")["caption_basic"].to_dict()
    # the published commit holds dvc.lock and the raw snapshot's .dvc files
    shown = sh(["git", "show", "--stat", "--format=%s", tags[0]], repo).stdout
    assert "dvc.lock" in shown and "store.dvc" in shown


def test_the_model_trained_on_the_generated_catalog_beats_chance_by_far(repo):
    """4 classes (chance 0.25): held-out products of the generated catalog (other stones,
    other photos, never in train) must come out at least 0.6 top-1. Frozen ImageNet
    features and a linear head reach about 0.9 on the demo's 12 classes; 0.6 leaves room
    for this catalog's few dozen test images while still failing a broken pipeline (a
    shuffled label or a wrong preprocessing lands near 0.25)."""
    import json

    m = json.loads((repo / "data" / "metrics" / "evaluate.json").read_text())
    assert m["split"] == "test" and m["classes"] == 4 and m["images"] > 10
    assert m["top1"] >= 0.6 and m["top3"] >= m["top1"] and m["top5"] == 1.0, m
    assert set(m["macro"]) == {"precision", "recall", "f1"}
    # nearest-product search: the test photos' nearest train photos share their class (4
    # classes: chance 0.25), with the model's embedding and the shared curation embedding
    r = m["retrieval"]
    assert r["model"]["queries"] == m["images"] and r["model"]["p@5"] >= 0.6, r
    assert r["shared"]["p@5"] >= 0.5 and r["model"]["index"] == "exact", r
    card = (repo / "models" / "MODEL_CARD.md").read_text()
    assert "efficientnet_lite0" in card and "top-1" in card and "precision@1/5/10" in card
    top = pd.read_parquet(repo / "data" / "evaluate" / "review_top.parquet")
    photos = dataset(repo).query("parent_id.isna()", engine="python")
    assert set(top["image_id"]) == set(photos["image_id"])  # the review app's first relabel keys
    firsts = top["top"].map(lambda t: json.loads(t)[0][0])
    assert (firsts.values == photos.set_index("image_id").loc[top["image_id"], "label"].values).mean() >= 0.8
    for f in ("confusion.png", "precision.png", "misclassified.png", "per_class.csv",
              "embeddings.parquet"):
        assert (repo / "data" / "evaluate" / f).exists(), f
    # what `gemcurate similar` searches: every photo once, no rotated or mirrored variant
    emb = pd.read_parquet(repo / "data" / "evaluate" / "embeddings.parquet")
    assert sorted(emb["image_id"]) == sorted(photos["image_id"])
    conf = pd.read_csv(repo / "data" / "plots" / "confusion.csv")
    assert list(conf.columns) == ["actual", "predicted"] and len(conf) == m["images"]
    train = json.loads((repo / "data" / "metrics" / "train.json").read_text())
    assert train["model"] == "efficientnet_lite0" and train["epochs"] >= 1
    assert (repo / "data" / "train" / "live" / "plots" / "metrics" / "val" / "top1.tsv").exists()


def test_predict_answers_every_file_and_names_the_broken_one(repo, tmp_path):
    import json

    good = next((repo / "data" / "store").rglob("*.jpg"))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(good.read_bytes()[:300])
    res = gemcurate("predict", str(good), str(bad), "--json", cwd=repo, check=False)
    answers = json.loads(res.stdout)
    assert res.returncode == 1 and len(answers) == 2
    assert len(answers[0]["top5"]) == 4 and abs(sum(t["probability"] for t in answers[0]["top5"]) - 1) < 1e-3
    assert answers[1]["path"] == str(bad) and answers[1]["error"]
    sim = json.loads(gemcurate("similar", str(good), "--k", "3", "--json", cwd=repo).stdout)
    assert len(sim["similar"]) == 3 and sim["excluded_own_product"]
    assert all(r["product_id"] not in sim["excluded_own_product"] for r in sim["similar"])


def test_second_repro_reruns_nothing(repo):
    res = dvc("repro", cwd=repo)
    assert ran_stages(res.stdout) == set(), res.stdout
    assert "up to date" in dvc("status", cwd=repo).stdout


@pytest.mark.parametrize("helper", ["pipeline/core/groups.py", "pipeline/core/flags.py",
                                    "pipeline/core/plots.py", "pipeline/core/manifest.py"])
def test_touching_a_shared_helper_makes_dvc_status_name_exactly_its_stages(repo, helper):
    import json

    from pipeline import project
    from pipeline.stages.registry import DVC_STAGES

    users = {s.name for s in DVC_STAGES if Path(helper) in project.stage_code(s)}
    assert users, helper
    path = repo / helper
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# touched\n")
        status = json.loads(dvc("status", "--json", cwd=repo).stdout or "{}")
        assert set(status) == users, (helper, status)
    finally:
        path.write_bytes(original)
    assert "up to date" in dvc("status", cwd=repo).stdout


def test_changing_the_target_reruns_only_augment_and_after(repo):
    """Only augment and the stages after it go stale; the dataset's stages rerun (training
    again would test nothing more: `dvc status` names it) and the new dataset publishes."""
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["augment"]["target_per_class"] = 50
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    stale = json.loads(dvc("status", "--json", cwd=repo).stdout or "{}")
    assert set(stale) == {"augment", "validate"}, stale   # the stages that read the parameter
    res = dvc("repro", "export", cwd=repo)
    assert ran_stages(res.stdout) == {"augment", "validate", "export"}, res.stdout
    assert set(json.loads(dvc("status", "--json", cwd=repo).stdout or "{}")) == {"train", "evaluate"}
    train = dataset(repo).query("split == 'train'")["label"].value_counts()
    assert ((train - 50).abs() <= 1).all(), train
    sh(["git", "add", "params.yaml"], repo)
    sh(["git", *GIT_ID, "commit", "-qm", "target 50"], repo)
    out = gemcurate("publish", cwd=repo).stdout
    assert re.search(r"published dataset/v\d{4}\.\d{2}\.\d{2}\.2 ", out), out


def test_pull_on_a_second_clone_gives_the_same_files(repo, tmp_path):
    tag = sorted(sh(["git", "tag"], repo).stdout.split())[-1]
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    remote = dvc("remote", "list", "--local", cwd=repo).stdout.split()[-1]
    dvc("remote", "modify", "--local", "local", "url", remote, cwd=clone)
    out = tmp_path / "pulled"
    res = gemcurate("pull", "--version", tag.split("/v", 1)[1], "--out", str(out), cwd=clone)
    assert "checksums verified" in res.stdout
    assert (out / "SHA256SUMS").read_text() == (repo / "data" / "dataset" / "SHA256SUMS").read_text()
    # plain `dvc get` works too
    got = tmp_path / "got"
    dvc("get", str(clone), "data/dataset", "--rev", tag, "-o", str(got), cwd=tmp_path)
    assert (got / "SHA256SUMS").read_text() == (out / "SHA256SUMS").read_text()
    # an unknown version is a clear error
    bad = gemcurate("pull", "--version", "1999.01.01", "--out", str(tmp_path / "x"), cwd=clone, check=False)
    assert bad.returncode == 1 and "cannot get dataset/v1999.01.01" in bad.stderr


def test_an_external_test_and_the_raw_photo_probe_in_dvc_repro(repo, tmp_path):
    """evaluate.external set: `dvc repro evaluate` reruns it, and it scores the folder as
    predict scores a photo, names the class it does not know, and fits the raw-photo probe
    in the same run (data/metrics/evaluate.json, external.csv, the model card)."""
    import json
    import shutil

    import yaml

    raw = pd.read_parquet(repo / "data" / "manifests" / "raw.parquet")
    ds = dataset(repo)
    test_products = set(ds.loc[ds["split"] == "test", "product_id"])
    pick = raw[raw["product_id"].isin(test_products) & raw["excluded_reason"].isna()]
    pick = pick.groupby("label").head(2)
    ext = tmp_path / "outside"
    for r in pick.itertuples():
        (ext / r.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / "data" / "store" / r.path, ext / r.label / Path(r.path).name)
    (ext / "not-a-class").mkdir()
    shutil.copy(repo / "data" / "store" / pick["path"].iloc[0], ext / "not-a-class" / "x.jpg")
    params = repo / "params.yaml"
    before = params.read_text()
    p = yaml.safe_load(before)
    p["evaluate"]["external"] = [str(ext)]
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    try:
        res = dvc("repro", "--single-item", "evaluate", cwd=repo)  # its params changed
        assert ran_stages(res.stdout) == {"evaluate"}, res.stdout
        m = json.loads((repo / "data" / "metrics" / "evaluate.json").read_text())["external"]
        assert m["images"] == len(pick) + 1 and m["scored"] == len(pick)
        assert m["unknown_classes"] == {"not-a-class": 1}
        assert m["top1"] is not None and m["baseline"]["top1"] is not None
        assert m["baseline"]["train_images"] > 0 and "vs_baseline_top1" in m
        rows = pd.read_csv(repo / "data" / "evaluate" / "external.csv")
        assert len(rows) == len(pick) + 1 and "baseline_predicted" in rows
        assert "Photos from outside the pipeline" in (repo / "models" / "MODEL_CARD.md").read_text()
    finally:
        params.write_text(before)


def test_an_experiment_with_another_architecture(repo):
    """``dvc exp run`` trains another architecture on the dataset the target change made
    (only train and evaluate run) and leaves the workspace as the experiment made it: the
    tests after it need no model."""
    import json

    res = dvc("exp", "run", "evaluate", "-S", "train.model=gemnet", "-S", "train.head_epochs=2",
              "-S", "train.image_size=64", cwd=repo)
    assert ran_stages(res.stdout) == {"train", "evaluate"}, res.stdout
    m = json.loads((repo / "data" / "metrics" / "evaluate.json").read_text())
    assert m["model"] == "gemnet" and 0 <= m["top1"] <= 1
    assert "gemnet" in dvc("exp", "show", "--json", cwd=repo).stdout


def test_refresh_against_the_next_epoch_keeps_splits(repo):
    before = pd.read_parquet(repo / "data" / "manifests" / "split.parquet")
    before = before[before["split"].notna()].set_index("image_id")["split"]
    # the demo's refresh scrape (the store at its next epoch), then curation up to the split:
    # training again would test nothing more here
    gemcurate("demo", "--scrape-only", "--", *STORE, "--epoch", "1", cwd=repo)
    assert "split" in ran_stages(dvc("repro", "split", cwd=repo).stdout)
    after = pd.read_parquet(repo / "data" / "manifests" / "split.parquet")
    after = after[after["split"].notna()].set_index("image_id")["split"]
    common = before.index.intersection(after.index)
    assert len(common) >= 0.8 * len(before)
    kept = float((before[common] == after[common]).mean())
    assert kept >= 0.99, kept
    assert not ((before[common] == "test") & (after[common] == "train")).any()


def test_a_planted_leak_stops_validate_and_publish(repo):
    from pipeline.core.manifest import write_manifest

    path = repo / "data" / "manifests" / "augment.parquet"
    df = pd.read_parquet(path)
    live = df[df["split"].notna() & df["excluded_reason"].isna() & df["parent_id"].isna()]
    a = live.index[live["split"] == "train"][0]
    b = live.index[live["split"] == "test"][0]
    df.loc[a, "dup_cluster"] = df.loc[b, "dup_cluster"]
    write_manifest(df, path)
    res = gemcurate("validate", cwd=repo, check=False)
    assert res.returncode == 1
    assert "[groups] expect_column_values_to_be_between(n_splits)" in res.stderr
    assert "a product or duplicate cluster in one split only" in res.stderr
    pub = gemcurate("publish", cwd=repo, check=False)
    assert pub.returncode == 1 and "publish refused" in pub.stderr
    # DVC sees the tampered output too
    assert "data/manifests/augment.parquet" in dvc("status", cwd=repo).stdout


def test_a_damaged_blob_stops_dvc_repro_with_warm_caches(repo):
    """Every per-image cache is warm: a store blob replaced by an HTML page stops `dvc
    repro` naming it (it once ran through: "didn't change, skipping"), and putting the
    bytes back lets it pass again."""
    crop = pd.read_parquet(repo / "data" / "manifests" / "crop.parquet")
    rel = crop.loc[crop["excluded_reason"].isna(), "path"].iloc[0]
    blob = repo / "data" / "store" / rel
    good = blob.read_bytes()
    blob.write_bytes(b"<html><body>Access denied</body></html>")
    try:
        res = dvc("repro", "dedupe", cwd=repo, check=False)
        assert res.returncode != 0, res.stdout[-2000:]
        assert rel in res.stderr + res.stdout and "holds other bytes" in res.stderr + res.stdout
    finally:
        blob.write_bytes(good)
    assert dvc("repro", "dedupe", cwd=repo).returncode == 0
