"""A real CeleryExecutor deployment on this machine: PostgreSQL (metadata), Redis (broker),
api-server, scheduler, dag-processor, triggerer and two Celery workers (queues ``default``
and ``gpu``). The refresh DAG is triggered through the REST API; the dataset asset event
starts the train DAG by itself, whose training runs on the ``gpu`` worker. The default worker
is SIGKILLed in the middle of the scrape: the task is retried on a fresh worker and the run
completes without downloading an image twice. Every process is stopped by its group.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) and Redis on 127.0.0.1:6379,
as CI has; skipped where either is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipeline.demo import process
from pipeline.interfaces.airflow import local as airflow_local
from pipeline.interfaces.airflow import orchestration as orch
from tests.e2e.test_airflow import STORE, sh
from tests.helpers import GIT_ID, ROOT, copy_tree, free_port, needs, reachable

needs("airflow", "celery")
pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


if not (reachable(5432) and reachable(6379)):
    pytest.skip("PostgreSQL and Redis on their standard ports are needed", allow_module_level=True)


class Cluster:
    def __init__(self, repo: Path, home: Path, env: dict[str, str], port: int):
        self.repo, self.home, self.env, self.port = repo, home, env, port
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 (the process owns it)
        p = subprocess.Popen([str(BIN / "airflow"), *args], cwd=self.repo, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = p
        return p

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                orch.stop_group(p, grace=15)

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v2{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    @property
    def token(self) -> str:
        if not getattr(self, "_token", None):
            with urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{self.port}/auth/token", method="GET"), timeout=30) as r:
                self._token = json.loads(r.read())["access_token"]
        return self._token

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def wait(self, what, timeout: float, every: float = 3):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = what()
            if got:
                return got
            for name, p in self.procs.items():
                if p.poll() is not None and name not in getattr(self, "killed", ()):
                    raise AssertionError(f"{name} exited {p.returncode}:\n{self.log(name)[-3000:]}")
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("celery")
    repo, home = tmp / "repo", tmp / "home"
    home.mkdir()
    copy_tree(repo)
    import yaml
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["scrape"].update(progress=False, concurrency=4)
    params["augment"]["target_per_class"] = 40
    params["train"].update(head_epochs=3)
    params["evaluate"]["contact_sheet"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    site = yaml.safe_load((repo / "sites" / "demo.yaml").read_text())
    site["schedule"] = "none"  # triggered through the API only: no scheduled run races it
    (repo / "sites" / "demo.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    sh(["git", "init", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", *GIT_ID, "commit", "-qm", "init"], repo)
    sh([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(tmp / "remote")], repo)
    db = f"gemcurate_af_{uuid.uuid4().hex[:8]}"
    sh(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {db}"], repo)
    port = free_port()
    redis_db = 1 + os.getpid() % 14
    subprocess.run(["redis-cli", "-n", str(redis_db), "flushdb"], capture_output=True)
    env = {**os.environ, "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1/{db}",
           "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
           "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1/{db}",
           "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "259200",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
           "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
           "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
           "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
           "GEMCURATE_RETRY_DELAY_S": "5",
           # one worker per stage, so no shard tasks: one default worker would run them one
           # after another anyway (the embedded Airflow's test runs two side by side;
           # test_curation_slice checks that two shards give what one process gives)
           "GEMCURATE_SHARDS": "1",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@localhost",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop(orch.PROJECTS_ENV, None)
    env = airflow_local.local_env(repo, port, env)
    airflow_local.setup(repo, env)
    c = Cluster(repo, home, env, port)
    try:
        c.start("api-server", "api-server", "--port", str(port))
        c.start("scheduler", "scheduler")
        c.start("dag-processor", "dag-processor")
        c.start("triggerer", "triggerer")
        c.start("worker", "celery", "worker", "-q", orch.QUEUE_DEFAULT, "--celery-hostname", "default1@%h")
        c.start("gpu-worker", "celery", "worker", "-q", orch.QUEUE_GPU, "--celery-hostname", "gpu@%h")
        c.wait(lambda: reachable(port), 180)
        c.wait(lambda: {d["dag_id"] for d in c.api("GET", "/dags")["dags"]} >= {
            "gemcurate_refresh__demo", "gemcurate_train__demo"}, 240)
        for dag_id in ("gemcurate_refresh__demo", "gemcurate_train__demo"):
            c.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        yield c
    finally:
        c.stop_all()
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE IF EXISTS {db}"],
                       capture_output=True)


def tis(c: Cluster, dag_id: str, run_id: str) -> dict[str, dict]:
    got = c.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {t["task_id"]: t for t in got}


def test_a_refresh_on_celery_survives_a_killed_worker_and_trains_on_the_gpu_queue(cluster):
    c = cluster
    slow = [*STORE[:-6], "--rate-limit", "15", "--burst", "5", "--faults", "0"]
    with process.storefront(slow, cwd=ROOT) as store:
        run = c.api("POST", "/dags/gemcurate_refresh__demo/dagRuns",
                    {"logical_date": None, "conf": {"base_url": store.base_url}})
        run_id = run["dag_run_id"]
        # the scrape is under way on the default worker: kill that worker outright
        c.wait(lambda: tis(c, "gemcurate_refresh__demo", run_id).get("scrape", {}).get("state")
               == "running" and store.stats()["images_served"] >= 10, 300, every=1)
        c.killed = {"worker"}
        os.killpg(c.procs["worker"].pid, signal.SIGKILL)
        c.procs["worker"].wait()
        c.start("worker2", "celery", "worker", "-q", orch.QUEUE_DEFAULT, "--celery-hostname", "default2@%h")

        def finished():
            state = c.api("GET", f"/dags/gemcurate_refresh__demo/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        assert c.wait(finished, 900, every=5) == "success", tis(c, "gemcurate_refresh__demo", run_id)
        served = store.stats()
    scrape = tis(c, "gemcurate_refresh__demo", run_id)["scrape"]
    assert scrape["try_number"] >= 2, scrape
    # which worker ran what: each worker logs the workloads it executes (log_path names them)
    assert "task_id=scrape/attempt=1" in c.log("worker")
    assert f"task_id=scrape/attempt={scrape['try_number']}" in c.log("worker2")
    # resumed, not restarted: every image of the catalog was sent once
    import pandas as pd
    raw = pd.read_parquet(c.repo / "data" / "manifests" / "raw.parquet")
    assert served["images_served"] <= raw["source_url"].nunique() + 4, (served, len(raw))

    def train_run():
        runs = c.api("GET", "/dags/gemcurate_train__demo/dagRuns")["dag_runs"]
        return runs[0] if runs and runs[0]["state"] == "success" else (
            None if not runs or runs[0]["state"] != "failed" else runs[0])

    tr = c.wait(train_run, 900, every=5)
    assert tr["state"] == "success" and tr["run_type"] == "asset_triggered", tr
    train = tis(c, "gemcurate_train__demo", tr["dag_run_id"])
    assert train["train"]["queue"] == "gpu", train["train"]
    assert "dag_id=gemcurate_train__demo" in c.log("gpu-worker")
    assert "gemcurate_train__demo" not in c.log("worker") + c.log("worker2")
    assert "gemcurate_refresh__demo" not in c.log("gpu-worker")
    events = c.api("GET", "/assets/events?limit=10")["asset_events"]
    model = [e for e in events if e["uri"] == "gemcurate://model/demo"]
    assert model and model[0]["extra"]["top1"] > 0.5


def test_a_ban_on_celery_fails_the_run_at_once_without_retries_and_alerts(cluster):
    """The storefront bans the address: the scrape task fails on its first try (no retry
    storm on the workers), nothing downstream runs, and the failure callback writes an alert."""
    c = cluster
    alerts = c.repo / "data" / "alerts.jsonl"
    before = alerts.read_text().splitlines() if alerts.exists() else []
    ban = [*STORE[:-6], "--rate-limit", "5", "--burst", "1", "--ban-strikes", "2", "--ban-seconds",
           "600", "--faults", "0"]
    with process.storefront(ban, cwd=ROOT) as store:
        while store.get("/")[0] != 403:  # another client behind this address ignored the 429s
            pass
        t0 = time.monotonic()
        run_id = c.api("POST", "/dags/gemcurate_refresh__demo/dagRuns",
                       {"logical_date": None, "conf": {"base_url": store.base_url}})["dag_run_id"]

        def finished():
            state = c.api("GET", f"/dags/gemcurate_refresh__demo/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        assert c.wait(finished, 300, every=2) == "failed"
        took = time.monotonic() - t0
    ti = tis(c, "gemcurate_refresh__demo", run_id)
    assert ti["scrape"]["state"] == "failed" and ti["scrape"]["try_number"] == 1, ti["scrape"]
    assert ti["snapshot"]["state"] == "upstream_failed" and ti["publish"]["state"] == "upstream_failed"
    # a retry would wait GEMCURATE_RETRY_DELAY_S and run again; the run ended well before 3 tries
    assert took < 240, took
    c.wait(lambda: len(alerts.read_text().splitlines()) > len(before) if alerts.exists() else False, 60)
    new = [json.loads(x) for x in alerts.read_text().splitlines()[len(before):]]
    assert any(a["task_id"] == "scrape" and "exited 3" in a["reason"] for a in new), new
