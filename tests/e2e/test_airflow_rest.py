"""The embedded Airflow as a user runs it: `gemcurate airflow start --port N`, its REST API,
a refresh triggered through it on a store with dead links, the train run its asset event
starts; and a port already taken refused. Its own project and AIRFLOW_HOME (a module of its
own, so it runs beside tests/e2e/test_airflow.py on another worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.demo import process
from tests.e2e.test_airflow import make_project, sh
from tests.helpers import ROOT, free_port, reachable

pytest.importorskip("airflow")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(repo, env): a project copy and its embedded Airflow's environment, this module's own."""
    return make_project(tmp_path_factory)


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
    """Airflow's REST API (v2) as a user drives it: a token from /auth/token, then JSON."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = self.call("POST", "/auth/token", {"username": user, "password": password},
                               auth=False)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def wait(self, what, timeout: float, every: float = 3.0):
        import time

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


def test_the_embedded_airflow_on_any_port_runs_a_triggered_refresh_and_its_train_run(project):
    """`gemcurate airflow start --port N` as a user runs it: the UI answers on loopback only,
    the login is printed, a refresh triggered through the REST API runs to success on a
    store with dead links (published, with a warning naming them), its asset event starts
    the train DAG, which succeeds too; SIGTERM stops the whole process group (airflow
    standalone alone ignores SIGTERM). With the execution API left at port 8080 every task
    of such a run was killed with "Connection refused"."""
    import signal
    import time

    repo, env = project
    port = free_port()
    assert port != 8080
    # a store refreshed by hand only (schedule: none): unpausing its DAG starts no run of
    # its own, so the run under test is the one triggered through the API
    site = repo / "sites" / "demo.yaml"
    site.write_text(site.read_text().replace('schedule: "@weekly"', "schedule: none"))
    env = {**env, "GEMCURATE_RETRY_DELAY_S": "5"}
    alerts = repo / "data" / "alerts.jsonl"
    seen = len(alerts.read_text().splitlines()) if alerts.exists() else 0
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "airflow", "start", "--port", str(port)],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    # another catalog than the refreshed fixture's, so this run publishes a new version
    dead_store = ["--seed", "5", "--classes", "4", "--products-per-class", "10", "--rate-limit",
                  "1000", "--burst", "200", "--faults", "0", "--dead-links", "1"]
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if line.startswith("stop with Ctrl-C"):
                break
        out = "".join(lines)
        assert f"Airflow UI: http://127.0.0.1:{port}/" in out and "login: " in out, out
        assert "gemcurate_refresh__demo" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/version", timeout=30) as r:
            assert r.status == 200
        assert _listeners(port) == {"127.0.0.1"}, _listeners(port)  # loopback unless --host
        user, password = next(x for x in out.splitlines() if x.startswith("login: "))[7:].split(" / ")
        api = Rest(port, user.strip(), password.strip())
        refresh, train = "gemcurate_refresh__demo", "gemcurate_train__demo"
        api.wait(lambda: api.call("GET", f"/api/v2/dags/{refresh}"), 180)
        api.call("PATCH", f"/api/v2/dags/{refresh}", {"is_paused": False})
        trains_before = api.call("GET", f"/api/v2/dags/{train}/dagRuns")["total_entries"]
        with process.storefront(dead_store, cwd=ROOT) as store:
            run_ = api.call("POST", f"/api/v2/dags/{refresh}/dagRuns",
                            {"logical_date": None, "conf": {"base_url": store.base_url}})
            state = api.wait(lambda: (s := api.call(
                "GET", f"/api/v2/dags/{refresh}/dagRuns/{run_['dag_run_id']}")["state"]) in
                ("success", "failed") and s, 600)
        tis = api.call("GET", f"/api/v2/dags/{refresh}/dagRuns/{run_['dag_run_id']}/taskInstances")
        states = {t["task_id"]: t["state"] for t in tis["task_instances"]}
        assert state == "success", (states, (Path(env["AIRFLOW_HOME"]) / "standalone.log"
                                              ).read_text()[-3000:])
        assert states["publish"] == "success", states
        summary = json.loads((repo / "data" / "manifests" / "raw_summary.json").read_text())
        assert [d["url"].rsplit("/", 1)[1] for d in summary["dead_urls"]] == ["gone-0"]
        new = [json.loads(x) for x in alerts.read_text().splitlines()[seen:]]
        assert any(a["level"] == "warning" and a["task_id"] == "scrape" and "/product/gone-0" in a["reason"]
                   for a in new), new
        # the published version's asset event starts the train DAG, which runs to success
        runs = api.wait(lambda: (r := api.call("GET", f"/api/v2/dags/{train}/dagRuns"))[
            "total_entries"] > trains_before and r, 120)
        last = max(runs["dag_runs"], key=lambda r: r["run_after"])
        assert last["run_type"] == "asset_triggered", last
        done = api.wait(lambda: (s := api.call(
            "GET", f"/api/v2/dags/{train}/dagRuns/{last['dag_run_id']}")["state"]) in
            ("success", "failed") and s, 600)
        assert done == "success"

        child = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert child, "airflow standalone runs under gemcurate airflow start"
        standalone = subprocess.run(["pgrep", "-g", child[0]], capture_output=True, text=True).stdout.split()
        assert len(standalone) >= 3, standalone   # its scheduler, api-server, dag-processor …
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        assert time.monotonic() - t < 90
        time.sleep(2)
        left = [p for p in standalone if Path(f"/proc/{p}").exists()
                and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
        assert not left, left
        assert not reachable(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)


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
