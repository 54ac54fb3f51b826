"""``gemcurate airflow setup|start``: the embedded Airflow of a project, sized for a laptop.

``start`` runs ``airflow standalone`` (SQLite metadata, LocalExecutor, api-server on
``--port``, listening on ``--host``, loopback unless asked; the tasks' execution API on the
same port) with the project's ``dags/``, parallelism lowered to what 2 cores carry, one
JWT secret kept in ``.airflow/`` (every component must share it), examples off; it creates
the pools, prints the UI address and the login, and on Ctrl-C or SIGTERM stops Airflow's
whole process group (``airflow standalone`` alone ignores SIGTERM). ``setup`` only migrates
the metadata database and creates the pools: what a production deployment's init job runs.

Example:
    $ gemcurate airflow start --port 8080
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline.core.tools import tool
from pipeline.interfaces.airflow import orchestration as orch

# SQLite metadata: every component writes to one file, and a writer waits up to this long
# for another's lock (sqlite3's default is 5 s: under load the api-server answered an
# unpause with 500 "database is locked"). Airflow imports it by name (sql_alchemy_connect_args).
SQLITE_CONNECT_ARGS = {"timeout": 60}


def airflow_exe() -> str:
    return tool("airflow")[0]


def local_env(root: Path, port: int = 8080, env: dict | None = None,
              host: str = "127.0.0.1") -> dict[str, str]:
    """The environment of the embedded Airflow: what is already set wins, but the address.

    The port and host asked for are what every component uses: the api-server listens
    there, and the task supervisors call the execution API there (Airflow's default,
    ``http://localhost:8080/execution/``, would kill every task of an api-server on
    another port with "Connection refused").
    """
    env = dict(os.environ if env is None else env)
    home = Path(env.get("AIRFLOW_HOME") or root / ".airflow")
    home.mkdir(parents=True, exist_ok=True)
    secret = home / "jwt_secret"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(32))
        secret.chmod(0o600)
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret.read_text().strip(),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # the DAG file is parsed again every 2 minutes, not every 30 s (Airflow's default): a
        # parse costs a CPU-second (it reads every site file), 4 % of a laptop core for nothing
        # when nothing changed. An edited DAG file is parsed at once (Airflow parses files
        # changed since their last parse first); a new or edited site file shows within 2 min
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
        orch.PROJECTS_ENV: env.get(orch.PROJECTS_ENV) or str(root),
    }
    for k, v in defaults.items():
        env.setdefault(k, v)
    if env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite").startswith("sqlite"):
        env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS",
                       "pipeline.interfaces.airflow.local.SQLITE_CONNECT_ARGS")
    # the address asked for wins over an inherited one, in every component
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__API__HOST"] = host
    local = "127.0.0.1" if host in ("0.0.0.0", "", "127.0.0.1") else host
    if ":" in local and not local.startswith("["):
        local = f"[{local}]"
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{local}:{port}/execution/"
    # airflow standalone starts its components as `airflow ...` from PATH: this environment's
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def pool_commands(projects: list[orch.Project]) -> list[list[str]]:
    return [[airflow_exe(), "pools", "set", p.pool, str(orch.POOL_SLOTS),
             f"gemcurate: one crawl or curation of {p.site} at a time"] for p in projects]


def sqlite_file(env: dict[str, str]) -> Path | None:
    """The metadata database's file when it is SQLite (Airflow's default), else None."""
    conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or \
        f"sqlite:///{Path(env['AIRFLOW_HOME']) / 'airflow.db'}"
    if not conn.startswith("sqlite:///"):
        return None
    return Path(conn[len("sqlite:///"):].split("?", 1)[0])


def write_ahead_log(db: Path) -> str:
    """Switch a SQLite file to write-ahead logging (kept in the file); the mode it is in.

    In SQLite's default (rollback journal) mode a writer needs every reader gone, and the
    scheduler, dag-processor and triggerer read the metadata all the time: under load an
    api-server request waited out even a 60 s lock timeout. With WAL, readers and the one
    writer no longer block each other.
    """
    with contextlib.closing(sqlite3.connect(db, timeout=SQLITE_CONNECT_ARGS["timeout"])) as con:
        return str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0])


def setup(root: Path, env: dict[str, str]) -> list[orch.Project]:
    """Migrate the metadata DB (SQLite: in WAL mode) and create one pool per project site."""
    projects = orch.discover(default=root, env=env)
    subprocess.run([airflow_exe(), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    db = sqlite_file(env)
    if db is not None and db.exists():
        write_ahead_log(db)
    for cmd in pool_commands(projects):
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return projects


def login(home: Path) -> tuple[str, str] | None:
    """The admin login ``airflow standalone`` generated (simple auth manager)."""
    path = home / "simple_auth_manager_passwords.json.generated"
    try:
        users = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return next(iter(users.items()), None)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float,
               stopping: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not stopping.is_set():
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(1)
    return False


def start(root: Path, port: int = 8080, timeout: float = 300, host: str = "127.0.0.1") -> int:
    """Run the embedded Airflow until interrupted; returns its exit code."""
    if not _port_free(host, port):
        print(f"gemcurate: error: port {port} on {host} is taken; pick another with --port",
              file=sys.stderr)
        return 2
    env = local_env(root, port, host=host)
    projects = setup(root, env)
    home = Path(env["AIRFLOW_HOME"])
    with open(home / "standalone.log", "ab") as log:
        proc = subprocess.Popen([airflow_exe(), "standalone"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        if not _wait_port("127.0.0.1" if host in ("0.0.0.0", "") else host, port, proc, timeout,
                          stopping):
            if not stopping.is_set():
                print(f"airflow did not answer on port {port} within {timeout:.0f} s; log: "
                      f"{home / 'standalone.log'}", file=sys.stderr)
            return 1
        user = login(home)
        shown = "127.0.0.1" if host == "0.0.0.0" else host
        print(f"Airflow UI: http://{shown}:{port}/  (log: {home / 'standalone.log'})"
              + ("  — listening on every interface" if host == "0.0.0.0" else ""))
        if user:
            print(f"login: {user[0]} / {user[1]}")
        for p in projects:
            print(f"DAGs: {p.dag_id} ({p.schedule or 'manual'}), gemcurate_train__{p.site}, "
                  f"gemcurate_apply_reviews__{p.site}; pool {p.pool}")
        print("stop with Ctrl-C", flush=True)
        while proc.poll() is None and not stopping.is_set():
            time.sleep(0.5)
        return 0 if stopping.is_set() else proc.returncode
    finally:
        if proc.poll() is None:  # airflow standalone ignores SIGTERM: its group is stopped
            print("stopping Airflow …", flush=True)
            orch.stop_group(proc, grace=10)
