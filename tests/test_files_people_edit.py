"""Files people edit are input too: a duplicated YAML key, decisions out of date order, an
oversized CSV field, terminal escapes in a note and a data folder that cannot be used each
get one sentence naming the file (and line), never a silent choice or a bare traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.core import decisions
from pipeline.core.config import ConfigError, load_params
from pipeline.core.paths import UnusableFolder, usable_folder
from pipeline.core.text import printable
from pipeline.stages.scrape.site import load_site
from tests.helpers import ROOT

A, B = "a" * 64, "b" * 64
KNOWN = decisions.Known(frozenset([A, B]), frozenset(["ruby", "spinel"]))


def test_a_second_section_in_params_is_an_error_naming_both_lines(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("scrape:\n  max_rate: 1.0\ndedupe:\n  phash_radius: 8\nscrape:\n  max_rate: 50.0\n")
    with pytest.raises(ConfigError, match=r"params.yaml: duplicate key 'scrape': first on line 1, "
                                          r"again on line 5"):
        load_params(f)
    res = subprocess.run([sys.executable, "-m", "pipeline", "scrape", "--params", str(f)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "duplicate key 'scrape'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("key", ["name", "start_urls", "base_url"])
def test_a_site_file_with_a_key_given_twice_is_refused(tmp_path, key):
    text = (ROOT / "sites" / "demo.yaml").read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"{key}:"))
    f = tmp_path / "site.yaml"
    f.write_text(text + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=f"duplicate key '{key}'"):
        load_site(f)


def test_a_nested_duplicate_key_is_found_and_yaml_merges_still_work(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("scrape:\n  max_rate: 1.0\n  max_rate: 2.0\n")
    with pytest.raises(ConfigError, match="'max_rate': first on line 2, again on line 3"):
        load_params(f)
    f.write_text("base: &b {max_rate: 3.0}\nscrape:\n  <<: *b\n")
    with pytest.raises(ConfigError, match="base"):  # an unknown section, not a duplicate
        load_params(f)


def _db(tmp_path):
    return decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))


def test_a_decision_older_than_the_one_in_force_is_refused_with_its_line(tmp_path):
    db = _db(tmp_path)
    f = tmp_path / "d.csv"
    f.write_text(f"image_id,decision,reviewer,reason,decided_at\n"
                 f"{A},reject,ana,hand,2026-12-01T10:00:00Z\n"
                 f"{A},accept,bo,,2020-01-01T00:00:00Z\n")
    with pytest.raises(decisions.DecisionError, match=r"line 3: decided_at 2020-01-01.*older than"):
        db.record_many(decisions.read_csv(f), KNOWN)
    assert db.history().empty  # all or nothing
    # the same against what is already recorded
    f.write_text(f"image_id,decision,reviewer,reason,decided_at\n{A},reject,ana,hand,2026-12-01T10:00:00Z\n")
    db.record_many(decisions.read_csv(f), KNOWN)
    f.write_text(f"image_id,decision,reviewer,decided_at\n{A},accept,bo,2020-01-01\n")
    with pytest.raises(decisions.DecisionError,
                       match=r"line 2: .*older than the decision it would supersede"):
        db.record_many(decisions.read_csv(f), KNOWN)
    assert db.latest().set_index("image_id").loc[A, "decision"] == "reject"
    # in date order, or without a date (now), it is the decision in force
    f.write_text(f"image_id,decision,reviewer\n{A},accept,bo\n")
    db.record_many(decisions.read_csv(f), KNOWN)
    assert db.latest().set_index("image_id").loc[A, "decision"] == "accept"


def test_a_csv_field_over_the_limit_names_the_file_and_the_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text(f"image_id,decision,reviewer,note\n{B},accept,ana,ok\n{A},accept,ana,{'x' * 200_000}\n")
    with pytest.raises(decisions.DecisionError, match=rf"{f.name}, line 3: not a readable CSV row"):
        decisions.read_csv(f)


def test_terminal_escapes_in_a_note_are_shown_escaped(tmp_path):
    assert printable("a\x1b[2Jb\x9b\x07") == "a\\x1b[2Jb\\x9b\\x07"
    assert printable("two\nlines\x1b", keep_newlines=True) == "two\nlines\\x1b"
    db = _db(tmp_path)
    db.record(A, "reject", "ana", reason="other", note="see\x1b[2J\x1b]0;pwned\x07 this", known=KNOWN)
    import yaml

    conf = tmp_path / "params.yaml"
    conf.write_text(yaml.safe_dump({"data": {"data_dir": str(tmp_path / "data"),
                                             "review_db": f"sqlite:///{tmp_path}/r.sqlite"}}))
    res = subprocess.run([sys.executable, "-m", "pipeline", "decisions", "list", "--params", str(conf)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout and "\\x1b[2J" in res.stdout


def test_a_data_dir_that_cannot_be_used_gets_one_sentence(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UnusableFolder, match="a file, not a folder"):
        usable_folder(f)
    with pytest.raises(UnusableFolder, match="a part of the path is a file"):
        usable_folder(f / "data")
    with pytest.raises(UnusableFolder, match="cannot be created"):
        usable_folder("/sys/gemcurate-test/data")
    res = subprocess.run([sys.executable, "-m", "pipeline", "dedupe", "--params", "none.yaml",
                          "--data-dir", str(f)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr
    assert "FileExistsError" not in res.stderr and ("a file, not a folder" in res.stderr
                                                    or "not found" in res.stderr), res.stderr
