"""pipeline.interfaces.airflow.orchestration without Airflow: outcomes, names, commands, projects, events."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.interfaces.airflow import orchestration as orch
from pipeline.stages.scrape import EXIT_CODES
from tests.helpers import ROOT

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]


def test_scrape_exit_codes_map_to_what_the_scheduler_does():
    got = {status: orch.scrape_outcome(code) for status, code in EXIT_CODES.items()}
    assert got == {"complete": orch.Outcome.SUCCESS, "banned": orch.Outcome.FAIL,
                   "complete_with_dead_links": orch.Outcome.SUCCESS,
                   "incomplete": orch.Outcome.RETRY, "stopped": orch.Outcome.RETRY,
                   "disallowed": orch.Outcome.SKIP}
    assert orch.scrape_outcome(2) is orch.Outcome.FAIL       # config error: a retry cannot fix it
    assert orch.scrape_outcome(1) is orch.Outcome.RETRY      # a crash
    assert orch.scrape_outcome(-9) is orch.Outcome.RETRY     # killed
    assert orch.command_outcome(0) is orch.Outcome.SUCCESS
    assert orch.command_outcome(2) is orch.Outcome.FAIL
    assert orch.command_outcome(1) is orch.Outcome.RETRY


def test_names_are_derived_from_a_validated_site_name():
    assert orch.pool_name("demo") == "site_demo"
    for bad in ("", "Demo", "../x", "a b", "x" * 65, "site;rm"):
        with pytest.raises(orch.OrchestrationError):
            orch.pool_name(bad)


def test_a_base_url_given_at_trigger_time_is_scheme_host_port_only():
    assert orch.check_base_url("http://127.0.0.1:8001/") == "http://127.0.0.1:8001"
    assert orch.check_base_url(None) is None and orch.check_base_url("  ") is None
    for bad in ("ftp://127.0.0.1", "http://127.0.0.1/path", "http://user@127.0.0.1",
                "javascript:alert(1)", "http://127.0.0.1:1/../"):
        with pytest.raises(orch.OrchestrationError):
            orch.check_base_url(bad)


def test_commands_are_argument_lists():
    p = orch.Project(ROOT, "demo", ROOT / "sites" / "demo.yaml", "@weekly", "http://127.0.0.1:8000")
    cmd = orch.scrape_command(p, "http://127.0.0.1:9000")
    assert cmd[1:] == ["scrape", "--no-progress", "--site", str(ROOT / "sites" / "demo.yaml"),
                       "--base-url", "http://127.0.0.1:9000"]
    assert "--base-url" in cmd and cmd[cmd.index("--base-url") + 1] == "http://127.0.0.1:9000"
    assert "--base-url" not in orch.scrape_command(p)
    assert orch.repro_command("export")[-2:] == ["repro", "export"]
    with pytest.raises(orch.OrchestrationError):
        orch.repro_command("export; rm -rf /")
    assert orch.shard_command("dedupe", 1, 4)[-2:] == ["--shard", "1/4"]


def test_this_repository_is_a_project_with_the_demo_site():
    (p,) = orch.discover(default=ROOT, env={})
    assert (p.site, p.schedule, p.dag_id, p.pool) == ("demo", "@weekly", "gemcurate_refresh__demo",
                                                       "site_demo")
    assert p.dataset_uri == "gemcurate://dataset/demo" and p.model_uri == "gemcurate://model/demo"


def project_copy(tmp_path: Path, site_name: str = "demo", schedule: str | None = None) -> Path:
    root = tmp_path / site_name
    (root / "sites").mkdir(parents=True)
    (root / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    site = yaml.safe_load((ROOT / "sites" / "demo.yaml").read_text())
    site["name"] = site_name
    if schedule is not None:
        site["schedule"] = schedule
    (root / "sites" / "demo.yaml").write_text(yaml.safe_dump(site))
    return root


def test_projects_come_from_the_environment_and_one_store_has_one_project(tmp_path):
    a = project_copy(tmp_path / "a", "gems-a", "0 3 * * 1")
    b = project_copy(tmp_path / "b", "gems-b", "none")
    got = orch.discover(env={orch.PROJECTS_ENV: f"{a}{os.pathsep}{b}"})
    assert [(p.site, p.schedule) for p in got] == [("gems-a", "0 3 * * 1"), ("gems-b", None)]
    twin = project_copy(tmp_path / "c", "gems-a")
    with pytest.raises(orch.OrchestrationError, match="two projects"):
        orch.discover(env={orch.PROJECTS_ENV: f"{a}{os.pathsep}{twin}"})
    with pytest.raises(orch.OrchestrationError, match="not a gemcurate project"):
        orch.discover(env={orch.PROJECTS_ENV: str(tmp_path)})


def test_a_bad_schedule_names_the_file_and_key(tmp_path):
    root = project_copy(tmp_path, "demo", "every tuesday")
    with pytest.raises(orch.OrchestrationError, match=r"demo\.yaml: schedule"):
        orch.load_project(root)


def test_run_streams_output_and_stops_the_whole_group_on_timeout(tmp_path, caplog):
    caplog.set_level("INFO", logger="pipeline.interfaces.airflow.orchestration")
    assert orch.run([sys.executable, "-c", "print('hello'); raise SystemExit(4)"], tmp_path) == 4
    assert "hello" in caplog.text
    child = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
              f"'import time; time.sleep(60)']); open({str(child)!r}, 'w').write(str(p.pid)); "
              "time.sleep(60)")
    t = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        orch.run([sys.executable, "-c", script], tmp_path, timeout=3)
    assert time.monotonic() - t < 30
    pid = int(child.read_text())
    time.sleep(0.5)
    status = Path(f"/proc/{pid}/status")
    # the grandchild went with its group (gone, or a zombie waiting for its reaper)
    assert not status.exists() or "State:\tZ" in status.read_text()


def test_event_extras_are_checked():
    ok = orch.check_event({"version": "dataset/v2026.12.01", "dvc_rev": "a" * 40, "images": 3})
    assert ok["version"] == "dataset/v2026.12.01"
    for bad in (None, {}, {"version": "../../etc"}, {"version": "v1", "dvc_rev": "HEAD; ls"},
                {"version": 5}):
        with pytest.raises(orch.OrchestrationError):
            orch.check_event(bad)


def git_repo(tmp_path: Path, lock: dict) -> Path:
    root = tmp_path / "r"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    subprocess.run([*GIT, "add", "dvc.lock"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "v1"], cwd=root, check=True)
    subprocess.run([*GIT, "tag", "-a", "dataset/v2026.12.01", "-m", "v1"], cwd=root, check=True)
    return root


def lock_with(dataset_md5: str, metrics_md5: str = "m1") -> dict:
    return {"stages": {"export": {"outs": [{"path": "data/dataset", "md5": dataset_md5},
                                           {"path": "data/metrics/export.json", "md5": metrics_md5}]}}}


def test_unchanged_since_latest_looks_at_the_dataset_only(tmp_path):
    root = git_repo(tmp_path, lock_with("d1.dir"))
    assert orch.unchanged_since_latest(root)
    (root / "dvc.lock").write_text(yaml.safe_dump(lock_with("d1.dir", "m2")))   # timings only
    assert orch.unchanged_since_latest(root)
    (root / "dvc.lock").write_text(yaml.safe_dump(lock_with("d2.dir")))
    assert not orch.unchanged_since_latest(root)
    assert orch.latest_version(root)[0] == "dataset/v2026.12.01"


def test_pending_decisions_counts_those_after_the_latest_version(tmp_path):
    from pipeline.core import decisions

    root = git_repo(tmp_path, lock_with("d1.dir"))
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert orch.pending_decisions(root) == 0           # no decisions database yet
    engine = decisions.connect(decisions.review_url(root / "data"))
    tagged = orch.latest_version(root)[1]
    with engine.begin() as c:
        for i, when in enumerate((tagged - dt.timedelta(hours=1), tagged + dt.timedelta(seconds=5),
                                  tagged + dt.timedelta(hours=2))):
            c.execute(decisions.decisions_table.insert().values(
                image_id=f"{i:064x}", decision="accept", reviewer="ann",
                decided_at=when.astimezone(dt.UTC)))
    engine.dispose()
    assert orch.pending_decisions(root) == 2


def test_the_environment_is_read_when_asked_and_checked():
    assert orch.retry_delay_s({}) == 300 and orch.retry_delay_s({"GEMCURATE_RETRY_DELAY_S": "5"}) == 5
    assert orch.shards({}) == 2 and orch.shards({"GEMCURATE_SHARDS": "500"}) == 64
    with pytest.raises(orch.OrchestrationError, match="GEMCURATE_SHARDS='two'"):
        orch.shards({"GEMCURATE_SHARDS": "two"})


def test_the_embedded_airflows_sqlite_file_and_its_write_ahead_log(tmp_path):
    import sqlite3

    from pipeline.interfaces.airflow import local

    home = tmp_path / "home"
    assert local.sqlite_file({"AIRFLOW_HOME": str(home)}) == home / "airflow.db"
    assert local.sqlite_file({"AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                              f"sqlite:///{tmp_path}/meta.db?timeout=5"}) == tmp_path / "meta.db"
    assert local.sqlite_file({"AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                              "postgresql+psycopg2://postgres@127.0.0.1/airflow"}) is None
    db = tmp_path / "meta.db"
    sqlite3.connect(db).close()
    assert local.write_ahead_log(db) == "wal"
    with sqlite3.connect(db) as con:  # kept in the file, for every later connection
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
