"""The DAGs under real Airflow 3, on one project and one Airflow home: parsed by a DagBag;
the embedded Airflow as a user runs it (`gemcurate airflow start --port N`, its REST API, a
refresh triggered through it on a store with dead links → publish → dataset asset event →
the train run that event starts); then, with ``airflow dags test``, a refresh of the
unchanged store that publishes nothing, a ban that fails at once with an alert, and the
apply-reviews DAG; and a port already taken refused.

The project under test is a copy of this working tree committed into a new git repository
(as in test_dvc_pipeline), with a tiny catalog; Airflow's home is a temp folder (SQLite).
One project for all of it: a refresh and a training cost minutes on 2 cores, and the
embedded Airflow's triggered refresh is the version every later test works on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.demo import process
from pipeline.interfaces.airflow import local as airflow_local
from tests.helpers import BIN, GIT_ID, ROOT, free_port, needs, project_repo, reachable, run

needs("airflow")
pytestmark = pytest.mark.slow

STORE = ["--seed", "3", "--classes", "4", "--products-per-class", "10", "--rate-limit", "1000",
         "--burst", "200", "--faults", "0"]
# the store the refreshes here read: one product page is gone for good
DEAD_STORE = ["--seed", "3", "--classes", "4", "--products-per-class", "10", "--rate-limit",
              "1000", "--burst", "200", "--faults", "0", "--dead-links", "1"]
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
    # a store refreshed by hand only (schedule: none): unpausing its DAG starts no run of its
    # own, so the runs under test are the ones triggered here
    site = repo / "sites" / "demo.yaml"
    site.write_text(site.read_text().replace('schedule: "@weekly"', "schedule: none"))
    sh(["git", *GIT_ID, "commit", "-qam", "refreshed by hand"], repo)
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
    # one worker, so no shard tasks: `dags test` runs its tasks one after another (the
    # triggered refresh above ran two shards side by side), and a shard task would only add
    # a task and a process to the same work
    return sh(cmd, repo, {**env, "GEMCURATE_SHARDS": "1"}, check=check)


def test_the_dagbag_imports_every_dag_with_the_expected_graph(project):
    repo, env = project
    code = ("from airflow.dag_processing.dagbag import DagBag; import json; b = DagBag(dag_folder='dags');"
            "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, 'dags': {"
            "d.dag_id: {'tags': sorted(d.tags), 'doc': bool(d.doc_md), 'catchup': d.catchup,"
            "'max_active_runs': d.max_active_runs,"
            "'tasks': {t.task_id: {'down': sorted(t.downstream_task_ids),"
            "'retries': t.retries, 'pool': t.pool, 'queue': t.queue, 'backoff': t.retry_exponential_backoff}"
            " for t in d.tasks}} for d in b.dags.values()}}));"
            # one worker (GEMCURATE_SHARDS=1, read when the file is parsed): no shard tasks
            "import os; os.environ['GEMCURATE_SHARDS'] = '1'; one = DagBag(dag_folder='dags');"
            "print(json.dumps({d.dag_id: {t.task_id: sorted(t.downstream_task_ids) for t in d.tasks}"
            " for d in one.dags.values()}))")
    out = [x for x in sh([sys.executable, "-c", code], repo, env).stdout.splitlines()
           if x.startswith("{")]
    bag, one_worker = json.loads(out[-2]), json.loads(out[-1])
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
    unsharded = {"dedupe": ["filter"], "filter": ["labels"], "labels": ["curate"],
                 "curate": ["validate"], "validate": ["export"], "export": ["publish"], "publish": []}
    assert one_worker["gemcurate_refresh__demo"] == {"scrape": ["snapshot"], "snapshot": ["dedupe"],
                                                     **unsharded}
    assert one_worker["gemcurate_apply_reviews__demo"] == {"new_decisions": ["dedupe"], **unsharded}
    for dag in bag["dags"].values():
        assert "gemcurate" in dag["tags"] and dag["doc"] and dag["catchup"] is False
        assert dag["max_active_runs"] == 1
        # shards compute into their own files, in parallel; everything else one at a time
        assert {k: t["pool"] for k, t in dag["tasks"].items() if not k.endswith("_shard")} == {
            k: "site_demo" for k in dag["tasks"] if not k.endswith("_shard")}
        assert {t["pool"] for k, t in dag["tasks"].items() if k.endswith("_shard")} <= {"default_pool"}
    assert refresh["tasks"]["scrape"]["retries"] == 3 and refresh["tasks"]["scrape"]["backoff"]
    assert refresh["tasks"]["validate"]["retries"] == 0   # a failed suite is not transient


def _listeners(port: int) -> set[str]:
    """The local addresses listening on TCP ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:  # LISTEN
                found.add({"0100007F": "127.0.0.1", "00000000": "0.0.0.0"}.get(addr, addr))
    return found


class Rest:
    """Airflow's REST API (v2) as a user drives it: a token from /auth/token, then JSON.

    A 5xx is retried a few times, as any client of a server under load does (the embedded
    Airflow's metadata is one SQLite file its four components write to)."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = self.call("POST", "/auth/token", {"username": user, "password": password},
                               auth=False)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        for attempt in range(4):
            req = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
            req.add_header("Content-Type", "application/json")
            if auth:
                req.add_header("Authorization", f"Bearer {self.token}")
            try:
                # longer than the metadata database's own lock wait (60 s, SQLITE_CONNECT_ARGS):
                # a request that waited it out answers 500 and is tried again below
                with urllib.request.urlopen(req, timeout=90) as r:
                    return json.loads(r.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == 3:
                    raise
                time.sleep(2 * (attempt + 1))
            except (TimeoutError, urllib.error.URLError) as exc:
                if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, TimeoutError):
                    raise
                # a loaded 2-core machine (three test workers and the Celery cluster beside
                # this Airflow) can keep the one api-server worker from answering in time: an
                # idempotent request is asked again; a POST is not (it may have been done)
                if method == "POST" or attempt == 3:
                    raise
        raise AssertionError("unreachable")

    def wait(self, what, timeout: float, every: float = 3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = what()
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
                got = None
            if got:
                return got
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s")


def _finished(api: Rest, dag_id: str, run_id: str) -> str | None:
    state = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
    return state if state in ("success", "failed") else None


@pytest.fixture(scope="module")
def triggered(project):
    """`gemcurate airflow start --port N` as a user runs it, on the module's project: a
    refresh triggered through its REST API on a store with dead links, then the train run
    the published version's asset event starts; SIGTERM at the end. Returns what was seen
    (asserted by the test below; the later tests work on the version it published)."""
    repo, env = project
    port = free_port()
    assert port != 8080
    env = {**env, "GEMCURATE_RETRY_DELAY_S": "5"}
    alerts = repo / "data" / "alerts.jsonl"
    seen_alerts = len(alerts.read_text().splitlines()) if alerts.exists() else 0
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "airflow", "start", "--port", str(port)],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    got: dict = {"port": port}
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if line.startswith("stop with Ctrl-C"):
                break
        out = got["out"] = "".join(lines)
        assert "login: " in out, out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/version", timeout=30) as r:
            got["version_status"] = r.status
        got["listeners"] = _listeners(port)
        user, password = next(x for x in out.splitlines() if x.startswith("login: "))[7:].split(" / ")
        api = Rest(port, user.strip(), password.strip())
        refresh, train = "gemcurate_refresh__demo", "gemcurate_train__demo"
        api.wait(lambda: api.call("GET", f"/api/v2/dags/{refresh}"), 180)
        api.call("PATCH", f"/api/v2/dags/{refresh}", {"is_paused": False})
        trains_before = api.call("GET", f"/api/v2/dags/{train}/dagRuns")["total_entries"]
        with process.storefront(DEAD_STORE, cwd=ROOT, port=PORT) as store:
            run_id = api.call("POST", f"/api/v2/dags/{refresh}/dagRuns",
                              {"logical_date": None, "conf": {"base_url": store.base_url}})["dag_run_id"]
            got["refresh"] = api.wait(lambda: _finished(api, refresh, run_id), 600)
        tis = api.call("GET", f"/api/v2/dags/{refresh}/dagRuns/{run_id}/taskInstances")
        got["refresh_tasks"] = {t["task_id"]: t["state"] for t in tis["task_instances"]}
        got["log"] = (Path(env["AIRFLOW_HOME"]) / "standalone.log").read_text()[-3000:]
        got["alerts"] = [json.loads(x) for x in alerts.read_text().splitlines()[seen_alerts:]] \
            if alerts.exists() else []
        if got["refresh"] == "success":
            # the published version's asset event starts the train DAG
            runs = api.wait(lambda: (r := api.call("GET", f"/api/v2/dags/{train}/dagRuns"))[
                "total_entries"] > trains_before and r, 120)
            last = got["train_run"] = max(runs["dag_runs"], key=lambda r: r["run_after"])
            got["train"] = api.wait(lambda: _finished(api, train, last["dag_run_id"]), 600)

        child = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        got["standalone"] = subprocess.run(["pgrep", "-g", child[0]], capture_output=True,
                                           text=True).stdout.split() if child else []
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        got["exit"] = proc.wait(timeout=90)
        got["stop_s"] = time.monotonic() - t
        time.sleep(2)
        got["left"] = [p for p in got["standalone"] if Path(f"/proc/{p}").exists()
                       and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
        got["reachable_after"] = reachable(port)
    finally:
        if proc.poll() is None:  # a step above failed: stop it as a user would, then for sure
            standalone = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                        text=True).stdout.split()
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            for group in [*standalone, str(proc.pid)]:  # the standalone has a session of its own
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(group), 9)
    return got


def test_the_embedded_airflow_on_any_port_runs_a_triggered_refresh_and_its_train_run(triggered):
    """The UI answers on loopback only, the login is printed, a refresh triggered through
    the REST API runs to success on a store with dead links (published, with a warning
    naming them), its asset event starts the train DAG, which succeeds too; SIGTERM stops
    the whole process group (airflow standalone alone ignores SIGTERM). With the execution
    API left at port 8080 every task of such a run was killed with "Connection refused"."""
    got = triggered
    port, out = got["port"], got["out"]
    assert f"Airflow UI: http://127.0.0.1:{port}/" in out and "login: " in out, out
    assert "gemcurate_refresh__demo" in out
    assert got["version_status"] == 200
    assert got["listeners"] == {"127.0.0.1"}, got["listeners"]  # loopback unless --host
    assert got["refresh"] == "success", (got["refresh_tasks"], got["log"])
    assert got["refresh_tasks"]["publish"] == "success", got["refresh_tasks"]
    assert {"dedupe_shard", "filter_shard", "crop_shard"} <= set(got["refresh_tasks"])
    assert any(a["level"] == "warning" and a["task_id"] == "scrape" and "/product/gone-0" in a["reason"]
               for a in got["alerts"]), got["alerts"]
    assert got["train_run"]["run_type"] == "asset_triggered", got["train_run"]
    assert got["train"] == "success"
    assert len(got["standalone"]) >= 3, got["standalone"]  # its scheduler, api-server, dag-processor …
    assert got["exit"] == 0 and got["stop_s"] < 90
    assert not got["left"], got["left"]
    assert not got["reachable_after"]


def test_the_published_version_and_the_model_carry_their_events(project, triggered):
    """The triggered refresh tagged one version and recorded the dead link; its dataset
    event names that commit; the train run's model event names that version."""
    repo, env = project
    summary = json.loads((repo / "data" / "manifests" / "raw_summary.json").read_text())
    assert [d["url"].rsplit("/", 1)[1] for d in summary["dead_urls"]] == ["gone-0"]
    events = asset_events(env, "gemcurate://dataset/demo")
    assert len(events) == 1
    ev = events[0]
    tags = sh(["git", "tag", "--list", "dataset/v*"], repo).stdout.split()
    assert ev["version"] in tags and len(tags) == 1
    assert ev["dvc_rev"] == sh(["git", "rev-parse", f"{ev['version']}^{{commit}}"], repo).stdout.strip()
    assert ev["classes"] == 4 and ev["images"] > 100
    assert ev["splits"]["train"] == 4 * 40
    model = asset_events(env, "gemcurate://model/demo")
    assert len(model) == 1 and model[0]["dataset_version"] == ev["version"]
    assert model[0]["model"] == "efficientnet_lite0" and model[0]["top1"] > 0.5
    assert (repo / "models" / "model.keras").exists()


def test_a_refresh_of_the_unchanged_store_publishes_nothing(project, triggered):
    """`airflow dags test` of the refresh DAG on the same store at the same address: it
    scrapes, finds nothing new and skips publish (no second version, no event)."""
    repo, env = project
    with process.storefront(DEAD_STORE, cwd=ROOT, port=PORT) as store:
        res = dags_test(env, repo, "gemcurate_refresh__demo", {"base_url": store.base_url})
    states = task_states(env, "gemcurate_refresh__demo")
    assert states["publish"] == "skipped" and states["scrape"] == "success", (states, res.stdout[-3000:])
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


def test_apply_reviews_skips_without_new_decisions_and_publishes_after_one(project, triggered):
    repo, env = project
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


def test_the_embedded_metadata_database_writes_ahead(project):
    """SQLite in WAL mode: its readers (scheduler, dag-processor) never block the api-server's
    writes (in rollback-journal mode an unpause waited out a 60 s lock under load)."""
    _, env = project
    with metadata(env) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_airflow_start_refuses_a_port_that_is_taken(project):
    import socket

    repo, env = project
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = sh([sys.executable, "-m", "pipeline", "airflow", "start", "--port", str(port)],
                 repo, env, check=False, timeout=120)
    assert res.returncode == 2 and f"port {port}" in res.stderr and "--port" in res.stderr
