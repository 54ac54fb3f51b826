"""``gemcurate init`` and the code lock, with the package as it is installed here.

The same scaffold from a non-editable wheel in a fresh virtual environment, outside
this repository, driven through scrape and ``dvc repro``, is tests/e2e/test_installed_wheel.py.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from pipeline import project
from pipeline.core.config import load_params
from pipeline.stages.registry import DVC_STAGES
from pipeline.stages.scrape.site import load_site
from tests.helpers import ROOT


def test_the_repository_files_are_what_init_writes_for_the_demo():
    """One source for each: the repository's own params.yaml and sites/demo.yaml are the
    package templates a new project starts from."""
    assert (ROOT / "params.yaml").read_text() == project.render_params("sites/demo.yaml")
    assert (ROOT / "sites" / "demo.yaml").read_text() == project.render_site(
        "demo", "http://127.0.0.1:8000")
    for platform in ("shopify", "woocommerce", "magento"):
        assert (ROOT / "sites" / f"{platform}.yaml").read_text() == project.render_site(
            platform, "http://127.0.0.1:8000", platform)
    assert project.dvc_yaml_mode(ROOT) == "files"
    # one source: the repository's DAG file is a link to the template init writes
    dags = ROOT / "dags" / "gemcurate_dags.py"
    assert dags.is_symlink()
    assert dags.resolve() == ROOT / "pipeline" / "project" / "templates" / "gemcurate_dags.py"


def test_init_scaffolds_a_git_and_dvc_project(tmp_path):
    dest = tmp_path / "gems"
    files = project.init_project(dest, site="my-store", base_url="http://127.0.0.1:8000")
    names = {f.relative_to(dest).as_posix() for f in files}
    assert {"params.yaml", "dvc.yaml", "sites/my-store.yaml", ".gitignore", ".dvcignore",
            "README.md", ".gemcurate/code.yaml", "expectations/dataset.json",
            "dags/gemcurate_dags.py"} <= names
    params = load_params(dest / "params.yaml")
    assert params.scrape.site == "sites/my-store.yaml"
    site = load_site(dest / "sites" / "my-store.yaml")
    assert site.name == "my-store" and site.base_url == "http://127.0.0.1:8000"
    dvc = yaml.safe_load((dest / "dvc.yaml").read_text())
    assert list(dvc["stages"]) == [s.name for s in DVC_STAGES]
    assert project.dvc_yaml_mode(dest) == "lock" and project.stale_stages(dest) == []
    log = subprocess.run(["git", "log", "--oneline"], cwd=dest, capture_output=True, text=True).stdout
    assert "gemcurate init" in log
    assert (dest / ".dvc" / "config").exists()
    tracked = subprocess.run(["git", "ls-files"], cwd=dest, capture_output=True, text=True).stdout
    assert ".gemcurate/code.yaml" in tracked and "dvc.yaml" in tracked


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"site": "My Store"}, "a site name is lower case"),
    ({"base_url": "ftp://x"}, r"is not an http\(s\) URL"),
])
def test_init_refuses_bad_names_and_urls(tmp_path, kwargs, message):
    with pytest.raises(project.ProjectError, match=message):
        project.init_project(tmp_path / "p", git=False, **kwargs)


def test_init_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    with pytest.raises(project.ProjectError, match="not empty"):
        project.init_project(tmp_path / "p")
    assert (tmp_path / "p" / "notes.txt").read_text() == "mine"


def test_a_stale_lock_stops_the_stages_whose_code_changed(tmp_path):
    dest = tmp_path / "p"
    project.init_project(dest, git=False)
    lock = dest / project.LOCK
    data = yaml.safe_load(lock.read_text())
    data["split"] = "0" * 64  # as if the installed gemcurate had other split code
    lock.write_text(yaml.safe_dump(data))
    assert project.stale_stages(dest) == ["split"]
    project.require_current_lock(dest, "dedupe")  # other stages still run
    with pytest.raises(project.ProjectError, match="gemcurate lock"):
        project.require_current_lock(dest, "split")
    with pytest.raises(project.ProjectError):
        project.require_current_lock(dest)  # publish: any stale stage
    assert project.write_lock(dest) == ["split"]
    assert project.stale_stages(dest) == []


@pytest.mark.parametrize("platform", ["shopify", "woocommerce", "magento"])
def test_init_starts_the_site_adapter_from_a_platform_template(tmp_path, platform):
    dest = tmp_path / "p"
    project.init_project(dest, site="gems-r-us", base_url="http://127.0.0.1:8100", git=False,
                         platform=platform)
    site = load_site(dest / "sites" / "gems-r-us.yaml")
    assert site.name == "gems-r-us" and site.base_url == "http://127.0.0.1:8100"
    assert site.sitemap is not None  # every platform template reads lastmod from the sitemap
    text = (dest / "sites" / "gems-r-us.yaml").read_text()
    assert "gemcurate site check" in text


def test_init_refuses_an_unknown_platform(tmp_path):
    with pytest.raises(project.ProjectError, match="--platform 'bigcommerce'"):
        project.init_project(tmp_path / "p", git=False, platform="bigcommerce")


def test_a_jewelry_project_starts_with_the_jewelry_defaults_and_every_comment():
    from pipeline.core.config import load_params
    from pipeline.project import KINDS

    gems = project.render_params("sites/x.yaml", "gems")
    jewelry = project.render_params("sites/x.yaml", "jewelry")
    assert gems == project.render_params("sites/x.yaml")
    changed = [(a, b) for a, b in zip(gems.splitlines(), jewelry.splitlines(), strict=True) if a != b]
    assert len(changed) == len(KINDS["jewelry"])
    for a, b in changed:  # the comment stays
        assert a.split("#")[1:] == b.split("#")[1:]
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(jewelry)
    p = load_params(f.name)
    assert p.crop.cut_by_border == "keep" and p.filter.hand_policy == "keep"
    assert p.crop.mode == "full" and p.augment.rotation_step == 360
    with pytest.raises(project.ProjectError, match="--kind"):
        project.render_params("sites/x.yaml", "watches")
