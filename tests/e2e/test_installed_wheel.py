"""As a new user would: a non-editable wheel in a fresh virtual environment, a project
started with ``gemcurate init`` in a folder outside this repository, the bundled
storefront, a scrape, ``dvc repro`` and a publish.

The wheel is built here and installed without its dependencies into a fresh venv, which
reads them from the suite's own environment through a path line (a ``.pth`` naming a folder
of links to that site-packages' entries, less the ``[train]`` extra — TensorFlow, Keras,
dvclive — and this checkout's editable install: the plain install, as a user gets it). So
the package under test is the wheel's, nothing of this checkout is on the venv's path, and
the suite does not unpack every dependency a second time (three minutes of two cores).
That the wheel declares what it needs is what CI's fresh environment checks:
``scripts/bootstrap.sh`` installs from the same ``pyproject.toml``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.demo import process
from tests.helpers import ROOT, reachable

pytestmark = pytest.mark.slow
STORE = ["--seed", "3", "--classes", "4", "--products-per-class", "10", "--rate-limit", "1000",
         "--burst", "200", "--faults", "0"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True,
                   timeout=300)
    new_site = next((tmp / "venv" / "lib").glob("python3*/site-packages"))
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "numpy").is_dir())
    deps = tmp / "dependencies"
    deps.mkdir()
    left_out = ("tensorflow", "keras", "tf_keras", "tensorboard", "dvclive", "gemcurate", "__editable__",
                "pipeline")
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(left_out) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (new_site / "dependencies.pth").write_text(f"{deps}\n")
    wheel = next((tmp / "dist").glob("gemcurate-*.whl"))
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(tmp / "venv" / "bin" / "python"),
                          "install", "-q", "--no-deps", str(wheel)],
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "venv" / "bin"


def run(venv: Path, *cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # the venv's own scripts first (gemcurate from the wheel), then the suite's tools (dvc)
    env["PATH"] = os.pathsep.join([str(venv), str(Path(sys.executable).parent), env.get("PATH", "")])
    res = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert res.returncode == 0, f"{cmd} → {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


def test_init_scrape_repro_publish_from_an_installed_wheel(venv, tmp_path, render_cache):
    home = tmp_path / "user"
    home.mkdir()
    where = run(venv, str(venv / "python"), "-c", "import pipeline; print(pipeline.__file__)", cwd=home)
    assert str(venv.parent) in where.stdout and str(ROOT) not in where.stdout

    # outside a project: one line that names `gemcurate init`
    out = run(venv, "gemcurate", "scrape", cwd=home, check=False)
    assert out.returncode == 2 and "gemcurate init" in out.stderr and "Traceback" not in out.stderr

    init = run(venv, "gemcurate", "init", "gems", cwd=home)
    # the base install has no TensorFlow: the project builds the dataset and says how to train
    assert "pip install 'gemcurate[train]' && gemcurate dvc-yaml --training" in init.stdout
    proj = home / "gems"
    assert "train" not in yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    p = yaml.safe_load((proj / "params.yaml").read_text())
    p["scrape"].update(max_rate=500.0, default_rate=500.0, concurrency=8, progress=False)
    p["augment"]["target_per_class"] = 60
    (proj / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(venv, "git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam",
        "fast demo params", cwd=proj)
    run(venv, "dvc", "remote", "modify", "--local", "local", "url", str(tmp_path / "remote"), cwd=proj)

    # the README's "Start a project", as written: the demo store on :8000, then
    # `gemcurate scrape && dvc repro && gemcurate publish` (a small catalog, for time)
    port = 8000 if not reachable(8000) else 0
    with process.storefront(STORE, cache_dir=render_cache, cwd=home, port=port,
                            command=[str(venv / "gemcurate")]) as store:
        flags = [] if port == 8000 else ["--base-url", store.base_url]
        out = run(venv, "bash", "-c", "gemcurate scrape " + " ".join(flags)
                  + " && dvc repro && gemcurate publish", cwd=proj)
    assert "run 1 complete" in out.stdout and "Running stage 'export'" in out.stdout
    assert "published dataset/v" in out.stdout, out.stdout[-2000:]
    tags = run(venv, "git", "tag", "--list", "dataset/v*", cwd=proj).stdout.split()
    assert len(tags) == 1
    no_tf = run(venv, "gemcurate", "train", cwd=proj, check=False)
    assert no_tf.returncode == 1 and "pip install 'gemcurate[train]'" in no_tf.stderr, no_tf.stderr
    add = run(venv, "gemcurate", "dvc-yaml", "--training", cwd=proj, check=False)
    assert add.returncode == 1 and "pip install 'gemcurate[train]' first" in add.stderr
    ds = pd.read_parquet(proj / "data" / "dataset" / "manifest.parquet")
    assert len(ds) and set(ds["split"]) == {"train", "val", "test"}
    assert (ds[ds["split"] == "train"]["label"].value_counts() == 60).all()
    assert "up to date" in run(venv, "dvc", "status", cwd=proj).stdout
    res = run(venv, "dvc", "repro", cwd=proj)  # nothing changed: nothing runs
    assert "Running stage" not in res.stdout
    assert run(venv, "gemcurate", "lock", "--check", cwd=proj).returncode == 0
