"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every Airflow
service shares the settings that must agree, the queues are the DAGs' queues, Celery's
visibility timeout outlasts the longest task, and every command the services run exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.interfaces.airflow import orchestration as orch
from tests.helpers import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # merge keys (<<) resolved
SERVICES = COMPOSE["services"]
AIRFLOW = {k: v for k, v in SERVICES.items() if k.startswith("airflow-")}
SHARED = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
          "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CORE__FERNET_KEY",
          "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CORE__DAGS_FOLDER",
          "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT", orch.PROJECTS_ENV)
BIN = Path(sys.executable).parent


def test_the_official_celery_layout_is_there():
    assert {"postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-worker-gpu",
            "minio", "storefront"} <= set(SERVICES)


@pytest.mark.parametrize("key", SHARED)
def test_every_airflow_service_gets_the_same_setting(key):
    values = {name: (svc.get("environment") or {}).get(key) for name, svc in AIRFLOW.items()}
    assert len(set(values.values())) == 1 and None not in values.values(), values


def test_the_jwt_secret_is_required_not_defaulted():
    secret = AIRFLOW["airflow-scheduler"]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert re.fullmatch(r"\$\{AIRFLOW__API_AUTH__JWT_SECRET:\?.+\}", secret), secret


def test_celery_visibility_timeout_outlasts_the_longest_task():
    env = AIRFLOW["airflow-worker"]["environment"]
    assert int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) > max(
        orch.TIMEOUTS_S.values())


def test_the_workers_listen_on_the_dags_queues_and_the_gpu_worker_reserves_a_gpu():
    assert AIRFLOW["airflow-worker"]["command"].split()[:4] == ["celery", "worker", "-q", orch.QUEUE_DEFAULT]
    gpu = AIRFLOW["airflow-worker-gpu"]
    assert gpu["command"].split()[:4] == ["celery", "worker", "-q", orch.QUEUE_GPU]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_shared_volumes_carry_the_project_to_every_airflow_service():
    for name, svc in AIRFLOW.items():
        assert any(v.endswith(":/opt/gemcurate/project") for v in svc["volumes"]), name
    assert AIRFLOW["airflow-worker"]["environment"]["AIRFLOW__CORE__DAGS_FOLDER"].startswith(
        "/opt/gemcurate/project/")


def airflow_subcommands() -> set[str]:
    out = subprocess.run([str(BIN / "airflow"), "--help"], capture_output=True, text=True,
                         env={"AIRFLOW_HOME": "/tmp/gemcurate-compose-test", "PATH": "/usr/bin:/bin"}).stdout
    return set(re.findall(r"^\s{6}([a-z][a-z-]+)\s{2,}", out, re.M))


def test_every_service_command_exists():
    pytest.importorskip("airflow")
    subs = airflow_subcommands()
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "airflow-worker", "airflow-worker-gpu"):
        first = AIRFLOW[name]["command"].split()[0]
        assert first in subs, (name, first, sorted(subs))
    celery = subprocess.run([str(BIN / "airflow"), "celery", "worker", "--help"], capture_output=True,
                            text=True, env={"AIRFLOW_HOME": "/tmp/gemcurate-compose-test",
                                            "PATH": "/usr/bin:/bin"})
    assert celery.returncode == 0 and "--queues" in celery.stdout and "--concurrency" in celery.stdout
    init = AIRFLOW["airflow-init"]["command"][-1]
    assert "airflow db migrate" in init and "gemcurate airflow setup" in init
    setup = subprocess.run([str(BIN / "gemcurate"), "airflow", "--help"], capture_output=True, text=True)
    assert setup.returncode == 0 and "setup" in setup.stdout
    store = SERVICES["storefront"]
    serve = subprocess.run([str(BIN / "gemcurate"), *store["entrypoint"][1:], "--help"],
                           capture_output=True, text=True)
    assert serve.returncode == 0
    assert all(opt in serve.stdout for opt in store["command"] if opt.startswith("--"))


def test_the_demo_sites_base_url_variable_names_the_storefront_service():
    (project,) = orch.discover(default=ROOT, env={})
    key = "AIRFLOW_VAR_" + project.base_url_variable.upper()
    from urllib.parse import urlsplit
    url = urlsplit(AIRFLOW["airflow-worker"]["environment"][key])
    store = SERVICES["storefront"]
    # the compose service's name and the port it serves on
    assert url.hostname in SERVICES and SERVICES[url.hostname] is store
    assert str(url.port) == store["command"][store["command"].index("--port") + 1]


def test_the_dockerfile_installs_gemcurate_on_the_tested_airflow():
    text = (ROOT / "Dockerfile").read_text()
    version = re.search(r"ARG AIRFLOW_VERSION=(\S+)", text).group(1)
    assert re.search(r"FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python3\.11", text)
    assert "/opt/gemcurate/src[postgres,airflow]" in text and "dvc-s3" in text
    airflow = pytest.importorskip("airflow")
    assert version.split(".")[0] == airflow.__version__.split(".")[0] == "3"
