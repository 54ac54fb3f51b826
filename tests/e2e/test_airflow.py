"""The DAGs under real Airflow 3: parsed by a DagBag, then run with ``airflow dags test``
against the demo storefront (refresh → publish → dataset asset event), then the train DAG
on that event, a ban that fails at once with an alert, and the apply-reviews DAG.

The project under test is a copy of this working tree committed into a new git repository
(as in test_dvc_pipeline), with a tiny catalog; Airflow's home is a temp folder (SQLite).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.demo import process
from pipeline.interfaces.airflow import local as airflow_local
from tests.helpers import BIN, ROOT, free_port, project_repo, run

pytest.importorskip("airflow")
pytestmark = pytest.mark.slow

STORE = ["--seed", "3", "--classes", "4", "--products-per-class", "10", "--rate-limit", "1000",
         "--burst", "200", "--faults", "0"]
PORT = free_port()  # a store keeps its address between refreshes


def sh(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True,
       timeout: float = 900) -> subprocess.CompletedProcess:
    return run(cmd, cwd, env, check, timeout)




@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(repo, env): a project copy and the environment of its embedded Airflow."""
    return make_project(tmp_path_factory)


def make_project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("airflow")
    repo = project_repo(tmp / "repo", tmp / "remote", augment={"target_per_class": 40},
                        train={"head_epochs": 4}, evaluate={"contact_sheet": 8})
    env = airflow_local.local_env(repo, env={**os.environ, "AIRFLOW_HOME": str(tmp / "home"),
                                             "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@localhost",
                                             "GIT_COMMITTER_NAME": "test",
                                             "GIT_COMMITTER_EMAIL": "t@localhost"})
    env.pop("GEMCURATE_PROJECTS", None)
    env = airflow_local.local_env(repo, env=env)
    sh([sys.executable, "-m", "pipeline", "airflow", "setup"], repo, env)
    return repo, env


def metadata(env: dict) -> sqlite3.Connection:
    return sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")


def task_states(env: dict, dag_id: str) -> dict[str, str]:
    with metadata(env) as db:
        run = db.execute("select run_id from dag_run where dag_id=? order by id desc limit 1",
                         (dag_id,)).fetchone()[0]
        return dict(db.execute("select task_id, state from task_instance where dag_id=? and run_id=?",
                               (dag_id, run)))


def asset_events(env: dict, uri: str) -> list[dict]:
    with metadata(env) as db:
        rows = db.execute("select e.extra from asset_event e join asset a on a.id = e.asset_id "
                          "where a.uri=? order by e.id", (uri,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def dags_test(env: dict, repo: Path, dag_id: str, conf: dict | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "airflow"), "dags", "test", dag_id]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    return sh(cmd, repo, env, check=check)


def test_the_dagbag_imports_every_dag_with_the_expected_graph(project):
    repo, env = project
    code = ("from airflow.dag_processing.dagbag import DagBag; import json; b = DagBag(dag_folder='dags');"
            "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, 'dags': {"
            "d.dag_id: {'tags': sorted(d.tags), 'doc': bool(d.doc_md), 'catchup': d.catchup,"
            "'max_active_runs': d.max_active_runs,"
            "'tasks': {t.task_id: {'down': sorted(t.downstream_task_ids),"
            "'retries': t.retries, 'pool': t.pool, 'queue': t.queue, 'backoff': t.retry_exponential_backoff}"
            " for t in d.tasks}} for d in b.dags.values()}}))")
    out = sh([sys.executable, "-c", code], repo, env).stdout.strip().splitlines()[-1]
    bag = json.loads(out)
    assert bag["errors"] == {}
    assert set(bag["dags"]) == {"gemcurate_refresh__demo", "gemcurate_train__demo",
                                "gemcurate_apply_reviews__demo"}
    refresh = bag["dags"]["gemcurate_refresh__demo"]
    curation = {"dedupe_shard": ["dedupe"], "dedupe": ["filter_shard"], "filter_shard": ["filter"],
                "filter": ["labels"], "labels": ["crop_shard"],
                "crop_shard": ["curate"], "curate": ["validate"], "validate": ["export"],
                "export": ["publish"], "publish": []}
    assert {k: v["down"] for k, v in refresh["tasks"].items()} == {
        "scrape": ["snapshot"], "snapshot": ["dedupe_shard"], **curation}
    train = bag["dags"]["gemcurate_train__demo"]
    assert {k: v["down"] for k, v in train["tasks"].items()} == {
        "version": ["evaluate", "train"], "train": ["evaluate"], "evaluate": []}
    assert {t["queue"] for t in train["tasks"].values()} == {"gpu"}
    reviews = bag["dags"]["gemcurate_apply_reviews__demo"]
    assert {k: v["down"] for k, v in reviews["tasks"].items()} == {
        "new_decisions": ["dedupe_shard"], **curation}
    for dag in bag["dags"].values():
        assert "gemcurate" in dag["tags"] and dag["doc"] and dag["catchup"] is False
        assert dag["max_active_runs"] == 1
        # shards compute into their own files, in parallel; everything else one at a time
        assert {k: t["pool"] for k, t in dag["tasks"].items() if not k.endswith("_shard")} == {
            k: "site_demo" for k in dag["tasks"] if not k.endswith("_shard")}
        assert {t["pool"] for k, t in dag["tasks"].items() if k.endswith("_shard")} <= {"default_pool"}
    assert refresh["tasks"]["scrape"]["retries"] == 3 and refresh["tasks"]["scrape"]["backoff"]
    assert refresh["tasks"]["validate"]["retries"] == 0   # a failed suite is not transient


@pytest.fixture(scope="module")
def refreshed(project):
    """The project after one manual refresh run against the demo storefront."""
    repo, env = project
    with process.storefront(STORE, cwd=ROOT, port=PORT) as store:
        res = dags_test(env, repo, "gemcurate_refresh__demo", {"base_url": store.base_url})
    return repo, env, res


def test_a_refresh_publishes_a_version_and_the_train_dag_trains_on_its_event(refreshed):
    repo, env, res = refreshed
    states = task_states(env, "gemcurate_refresh__demo")
    assert set(states.values()) == {"success"}, (states, res.stdout[-4000:])
    assert {"dedupe_shard", "filter_shard", "crop_shard"} <= set(states)
    events = asset_events(env, "gemcurate://dataset/demo")
    assert len(events) == 1
    ev = events[0]
    tags = sh(["git", "tag", "--list", "dataset/v*"], repo).stdout.split()
    assert ev["version"] in tags and len(tags) == 1
    assert ev["dvc_rev"] == sh(["git", "rev-parse", f"{ev['version']}^{{commit}}"], repo).stdout.strip()
    assert ev["classes"] == 4 and ev["images"] > 100
    assert ev["splits"]["train"] == 4 * 40

    res = dags_test(env, repo, "gemcurate_train__demo")
    states = task_states(env, "gemcurate_train__demo")
    assert set(states.values()) == {"success"}, (states, res.stdout[-4000:])
    model = asset_events(env, "gemcurate://model/demo")
    assert len(model) == 1 and model[0]["dataset_version"] == ev["version"]
    assert model[0]["model"] == "efficientnet_lite0" and model[0]["top1"] > 0.5
    assert (repo / "models" / "model.keras").exists()

    # nothing changed in the store: the next refresh publishes no new version
    with process.storefront(STORE, cwd=ROOT, port=PORT) as store:
        dags_test(env, repo, "gemcurate_refresh__demo", {"base_url": store.base_url})
    states = task_states(env, "gemcurate_refresh__demo")
    assert states["publish"] == "skipped" and states["scrape"] == "success", states
    assert len(asset_events(env, "gemcurate://dataset/demo")) == 1


def test_a_ban_fails_the_refresh_at_once_and_alerts(project):
    repo, env = project
    alerts = repo / "data" / "alerts.jsonl"
    before = alerts.read_text().splitlines() if alerts.exists() else []
    ban = ["--seed", "3", "--classes", "4", "--products-per-class", "10", "--rate-limit", "5",
           "--burst", "1", "--ban-strikes", "2", "--ban-seconds", "600", "--faults", "0"]
    with process.storefront(ban, cwd=ROOT) as store:
        # another client behind the same address ignored the 429s: the address is banned
        while store.get("/")[0] != 403:
            pass
        res = dags_test(env, repo, "gemcurate_refresh__demo", {"base_url": store.base_url}, check=False)
    states = task_states(env, "gemcurate_refresh__demo")
    assert states["scrape"] == "failed", (states, res.stdout[-3000:])
    assert states["publish"] in ("upstream_failed", None)
    with metadata(env) as db:
        tries = db.execute("select try_number from task_instance where dag_id=? and task_id='scrape' "
                           "order by id desc limit 1", ("gemcurate_refresh__demo",)).fetchone()[0]
    assert tries == 1                     # banned: no retry storm
    new = alerts.read_text().splitlines()[len(before):]
    assert any(json.loads(x)["task_id"] == "scrape" and "exited 3" in json.loads(x)["reason"]
               for x in new), new


def test_apply_reviews_skips_without_new_decisions_and_publishes_after_one(refreshed):
    repo, env, _ = refreshed
    dags_test(env, repo, "gemcurate_apply_reviews__demo")
    states = task_states(env, "gemcurate_apply_reviews__demo")
    assert states["new_decisions"] == "skipped" and states["publish"] == "skipped", states
    published = asset_events(env, "gemcurate://dataset/demo")

    import pandas as pd
    ds = pd.read_parquet(repo / "data" / "dataset" / "manifest.parquet")
    victim = ds.loc[ds["parent_id"].isna() & (ds["split"] == "test"), "image_id"].iloc[0]
    sh([sys.executable, "-m", "pipeline", "decide", victim, "reject", "--by", "ann",
        "--reason", "test"], repo, env)
    dags_test(env, repo, "gemcurate_apply_reviews__demo")
    states = task_states(env, "gemcurate_apply_reviews__demo")
    assert set(states.values()) == {"success"}, states
    events = asset_events(env, "gemcurate://dataset/demo")
    assert len(events) == len(published) + 1
    ds = pd.read_parquet(repo / "data" / "dataset" / "manifest.parquet")
    assert victim not in set(ds["image_id"])
