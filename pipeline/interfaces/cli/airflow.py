"""``gemcurate airflow setup|start``: the project's embedded Airflow."""

from __future__ import annotations

import argparse

from pipeline.core.paths import find_project_root
from pipeline.interfaces.cli.common import (
    port_number,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    af = sub.add_parser("airflow", help="the embedded Airflow: setup (DB + pools) or start (standalone)")
    af.add_argument("action", choices=["setup", "start"])
    af.add_argument("--port", type=port_number, default=8080,
                    help="the Airflow UI / API port; every component uses it (the tasks' "
                         "execution API too)")
    af.add_argument("--host", default="127.0.0.1",
                    help="the address the UI / API listens on (default: loopback only; 0.0.0.0 "
                         "opens it to the network)")
    af.set_defaults(func=cmd_airflow)


def cmd_airflow(a: argparse.Namespace) -> int:
    from pipeline.interfaces.airflow import local as airflow_local
    from pipeline.interfaces.airflow import orchestration as orch

    root = find_project_root()
    if a.action == "setup":
        env = airflow_local.local_env(root, a.port, host=a.host)
        for p in airflow_local.setup(root, env):
            print(f"pool {p.pool} ({orch.POOL_SLOTS} slot) for {p.dag_id}")
        return 0
    return airflow_local.start(root, a.port, host=a.host)
