"""The command line: exit codes and one-line errors, projects found upwards, and
``gemcurate`` outside a project."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.interfaces.cli import build_parser, main
from pipeline.stages.registry import STAGES
from tests.helpers import ROOT


def test_cli_reports_bad_params_with_exit_2(tmp_path, capsys):
    f = tmp_path / "params.yaml"
    f.write_text("scrape:\n  max_rate: -1\n")
    code = main(["scrape", "--params", str(f), "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2
    assert "scrape.max_rate: -1.0 is below the minimum" in err
    assert not (tmp_path / "d" / "manifests").exists()


def test_cli_rejects_bad_store_flags(capsys):
    assert main(["store", "truth", "--out", "/dev/null", "--junk", "selfie=/tmp"]) == 2
    assert "expected certificate=PATH or hand=PATH" in capsys.readouterr().err


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("cmd", [["scrape"], ["dedupe"], ["publish"], ["decisions", "list"],
                                 ["lock", "--check"], ["dvc-yaml", "--check"]])
def test_outside_a_project_it_says_so_in_one_line_and_names_init(tmp_path, cmd):
    res = run_cli(*cmd, cwd=tmp_path)
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not inside a gemcurate project" in lines[0], res.stderr
    assert "gemcurate init" in lines[0] and "Traceback" not in res.stderr


def test_a_project_is_found_from_a_subfolder(tmp_path):
    """Like git and DVC: inside a project's subfolder, commands run at its root."""
    sub = ROOT / "sites"
    res = run_cli("dvc-yaml", "--check", cwd=sub)
    assert res.returncode == 0 and "dvc.yaml: current" in res.stdout, res


def test_every_stage_has_a_subcommand_with_the_registry_help():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    for s in STAGES:
        assert s.name in choices and choices[s.name].description is None
    assert {"init", "store", "scrape", "snapshot", "publish", "pull", "lock", "dvc-yaml",
            "decide", "decisions", "demo"} <= set(choices)


def test_a_typo_in_a_check_name_fails_before_any_work(tmp_path, capsys):
    f = tmp_path / "params.yaml"
    f.write_text("filter:\n  checks:\n    hands: {threshold: 0.4}\n")
    code = main(["dedupe", "--params", str(f), "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "filter.checks.hands: no such check (did you mean 'hand'?)" in err


def test_relative_paths_keep_their_meaning_when_the_cli_moves_to_the_root(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {data_dir: data}\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "sub").mkdir()
    # params.yaml's paths are the root's: data/ at the root
    assert run_cli("decisions", "list", cwd=tmp_path / "sub").returncode == 0
    assert (tmp_path / "data" / "state" / "reviews.sqlite").exists()
    # a path typed on the command line is where it was typed
    assert run_cli("decisions", "list", "--data-dir", "d", cwd=tmp_path / "sub").returncode == 0
    assert (tmp_path / "sub" / "d" / "state" / "reviews.sqlite").exists()
    assert not (tmp_path / "d").exists()


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_v(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {data_dir: data}\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "data" / "state").mkdir(parents=True)
    (tmp_path / "data" / "state" / "reviews.sqlite").write_bytes(b"not a database" * 100)
    res = run_cli("decisions", "list", cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "run with -v" in res.stderr
    assert "DatabaseError" in res.stderr
    assert "Traceback" in run_cli("-v", "decisions", "list", cwd=tmp_path).stderr


@pytest.mark.parametrize("args", [
    ["decide", "../../evil", "accept", "--by", "ana"],
    ["decide", "a" * 64, "relabel", "--label", "=HYPERLINK(1)", "--by", "ana"],
    ["decisions", "import", "missing.csv"],
])
def test_bad_decisions_are_one_line_errors(tmp_path, args):
    (tmp_path / "params.yaml").write_text("data: {data_dir: data}\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    from pipeline.core.manifest import write_manifest
    from tests.helpers import raw_manifest

    write_manifest(raw_manifest([("a" * 64, "ruby", "P1", 100)]),
                   tmp_path / "data" / "manifests" / "raw.parquet")
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr
