"""A gemcurate project: start one (``gemcurate init``), keep its ``dvc.yaml`` and code lock.

A project is a git + DVC repository holding ``params.yaml``, ``dvc.yaml``,
``sites/<name>.yaml``, ``expectations/`` and ``data/``. DVC must rerun a stage
when the code it runs changes. There are two ways to tell it, one per kind of
project:

* **files** — in a checkout of gemcurate itself (the package's source is inside
  the project), every stage lists its import closure (:mod:`pipeline.project.codegraph`)
  as file dependencies, so editing a helper makes ``dvc status`` name exactly the
  stages that import it.
* **lock** — in a project started with ``gemcurate init`` against an installed
  wheel, the code is not in the repository. ``.gemcurate/code.yaml`` (committed)
  records a digest of each stage's import closure, and every stage takes its own
  key of that file as a DVC param. ``gemcurate scrape`` and ``snapshot`` refresh
  the lock; a stage refuses to run, and ``publish`` to tag, while it is stale, so
  an upgraded gemcurate can never build a dataset DVC thinks the old code made.

The package also holds what reads a project folder as a whole: ``codegraph`` (a module's
import closure) and ``verify`` (``gemcurate verify``). May import ``pipeline.core`` and the
stage registry and stages; nothing in ``interfaces``.

Example:
    $ gemcurate init ~/gems --site mystore --base-url https://shop.example.com
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from importlib import metadata, resources
from pathlib import Path

import yaml

from pipeline.core.atomic import write_text
from pipeline.core.config import PLATFORMS
from pipeline.core.config import parse_yaml as _yaml
from pipeline.core.errors import UserError
from pipeline.core.paths import find_project_root
from pipeline.project import codegraph
from pipeline.stages.registry import DVC_STAGES, Stage

logger = logging.getLogger(__name__)

LOCK = Path(".gemcurate") / "code.yaml"
GIT_ID = ["-c", "user.name=gemcurate", "-c", "user.email=gemcurate@localhost"]
SITE_NAME = r"[a-z0-9][a-z0-9_-]*"


class ProjectError(UserError, RuntimeError):
    """A project cannot be started or its code lock is stale; the message says what to do."""


def version() -> str:
    try:
        return metadata.version("gemcurate")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+source"


def template(name: str) -> str:
    """A file of ``pipeline/project/templates/`` (package data, present in an installed wheel)."""
    return resources.files("pipeline").joinpath("project", "templates", name).read_text(encoding="utf-8")


def is_source_checkout(root: Path) -> bool:
    """Whether ``root`` holds the very package that is running (gemcurate's own repository)."""
    return (root / "pipeline").resolve() == codegraph.SRC


# --------------------------------------------------------------------------- dvc.yaml


def stage_code(stage: Stage) -> list[Path]:
    """The files a stage runs: its import closure and the package data it reads."""
    return sorted({*codegraph.closure(stage.module), *(Path(p) for p in stage.code_data)})


def _dvc_stage(stage: Stage, mode: str) -> dict:
    deps = [*(p.as_posix() for p in stage_code(stage))] if mode == "files" else []
    params: list = list(stage.params)
    if mode == "lock":
        params.append({LOCK.as_posix(): [stage.name]})
    d: dict = {"cmd": f"gemcurate {stage.name} --no-progress", "deps": [*deps, *stage.deps],
               "params": params}
    d["outs"] = [{k: v} if v else k for k, v in stage.outs.items()]
    if stage.metrics:
        d["metrics"] = [{m: {"cache": False}} for m in stage.metrics]
    if stage.plots:
        d["plots"] = [{k: v} for k, v in stage.plots.items()]
    return d


TRAINING_STAGES = ("train", "evaluate")


def training_available() -> bool:
    """Whether this environment can train (TensorFlow and Keras importable, ``gemcurate[train]``)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "keras"))


def dvc_yaml_trains(root: Path, default: bool | None = None) -> bool:
    """Whether the project's ``dvc.yaml`` has the training stages; with no readable file,
    ``default`` (None: whether this environment can train).

    Raises:
        ConfigError: The file repeats a key (named, with both lines).
    """
    path = Path(root) / "dvc.yaml"
    try:
        stages = (_yaml(path.read_text(), str(path)) or {}).get("stages") or {}
    except (OSError, AttributeError):
        return training_available() if default is None else default
    return "train" in stages


def render_dvc_yaml(mode: str, training: bool = True) -> str:
    """``dvc.yaml`` for a project of ``mode`` ``files`` or ``lock`` (see the module doc).

    Without ``training`` the train and evaluate stages are left out: a dataset project,
    whose ``dvc repro`` builds, validates and exports the dataset with the base install.
    """
    if mode not in ("files", "lock"):
        raise ValueError(f"mode {mode!r}")
    how = ("each stage lists every module it imports (pipeline/project/codegraph.py), so editing "
           "a helper\n# reruns exactly the stages that use it"
           if mode == "files" else
           "each stage takes its key of .gemcurate/code.yaml (a digest of the code it "
           "runs) as a\n# param, refreshed by `gemcurate scrape`, `snapshot` and `lock`")
    head = (
        "# gemcurate's DVC pipeline: raw snapshot → "
        + " → ".join(s.name for s in DVC_STAGES) + ".\n"
        "# Generated from pipeline/stages/registry.py by `gemcurate dvc-yaml`; do not edit by hand.\n"
        "#\n"
        "# The raw snapshot (data/store, data/manifests/raw.parquet) comes from a scrape, which\n"
        "# talks to a live store and so is not a reproducible stage; `gemcurate snapshot`\n"
        "# tracks it with `dvc add`. params lists the exact keys a stage reads (workers and\n"
        "# progress never change outputs). Code: " + how + ".\n")
    if not training:
        head += ("#\n# train and evaluate are left out: TensorFlow was not installed when this file\n"
                 "# was written. To train: pip install 'gemcurate[train]', then `gemcurate dvc-yaml\n"
                 "# --training` adds them.\n")
    body = {"stages": {s.name: _dvc_stage(s, mode) for s in DVC_STAGES
                       if training or s.name not in TRAINING_STAGES}}
    return head + yaml.safe_dump(body, sort_keys=False, width=100)


def dvc_yaml_mode(root: Path) -> str:
    return "files" if is_source_checkout(root) else "lock"


# --------------------------------------------------------------------------- code lock


def code_lock() -> dict:
    """The lock of the running code: gemcurate's version and each DVC stage's digest."""
    out: dict = {"gemcurate": version()}
    for s in DVC_STAGES:
        out[s.name] = codegraph.digest(stage_code(s))
    return out


def write_lock(root: Path) -> list[str]:
    """Write ``.gemcurate/code.yaml``; returns the stages whose code changed since."""
    path = root / LOCK
    try:
        old = (_yaml(path.read_text(), str(path)) if path.exists() else {}) or {}
    except (OSError, yaml.YAMLError):
        old = {}
    if not isinstance(old, dict):
        old = {}
    new = code_lock()
    changed = [s.name for s in DVC_STAGES if (old or {}).get(s.name) != new[s.name]]
    if changed or old.get("gemcurate") != new["gemcurate"]:
        write_text(path, "# The code each stage runs (sha256 of its import closure); written by gemcurate,\n"
                   "# a DVC param of each stage: commit it with dvc.lock.\n"
                   + yaml.safe_dump(new, sort_keys=False))
    return changed


def stale_stages(root: Path) -> list[str]:
    """Stages whose locked digest differs from the running code ([] outside lock mode)."""
    path = root / LOCK
    if not path.exists():
        return []
    try:
        old = _yaml(path.read_text(), str(path)) or {}
        if not isinstance(old, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError):
        old = {}  # unreadable: every stage counts as stale until `gemcurate lock`
    new = code_lock()
    return [s.name for s in DVC_STAGES if old.get(s.name) != new[s.name]]


def refresh_lock(root: Path | None = None) -> None:
    """Refresh a lock-mode project's code lock, saying which stages' code changed."""
    root = root or find_project_root()
    if root is None or not (root / LOCK).exists():
        return
    changed = write_lock(root)
    if changed:
        print(f"gemcurate {version()}: the code of {', '.join(changed)} changed; "
              f"{LOCK} updated, so `dvc repro` reruns them")


def require_current_lock(root: Path | None, stage: str | None = None) -> None:
    """Refuse to run ``stage`` (or to publish) on code the lock does not describe."""
    if root is None:
        return
    stale = stale_stages(root)
    if stale and (stage is None or stage in stale):
        raise ProjectError(
            f"the installed gemcurate ({version()}) runs other code for {', '.join(stale)} than "
            f"{LOCK} records; run `gemcurate lock` (then `dvc repro` reruns those stages)")


# --------------------------------------------------------------------------- init




def render_site(name: str, base_url: str, platform: str = "demo") -> str:
    """``sites/<name>.yaml``: the commented template of every key, for ``name`` at ``base_url``.

    ``platform`` picks the template: ``demo`` (the bundled storefront's HTML), ``shopify``,
    ``woocommerce`` or ``magento`` (their public URL schemes, HTML and JSON shapes).
    """
    if platform not in PLATFORMS:
        raise ProjectError(f"--platform {platform!r}: expected one of {', '.join(PLATFORMS)}")
    name_file = "site.yaml" if platform == "demo" else f"site-{platform}.yaml"
    return template(name_file).replace("{name}", name).replace("{base_url}", base_url)


#: what a kind of catalog changes in params.yaml (``gemcurate init --kind``): loose gems keep
#: the defaults; a jewelry store's pieces often fill the frame and are shown worn, and on
#: photos from outside the whole photo without rotations scored best (docs/benchmarks.md,
#: "Photos from outside the pipeline")
KINDS: dict[str, dict[str, str]] = {
    "gems": {},
    "jewelry": {"crop.cut_by_border": "keep", "filter.hand_policy": "keep", "crop.mode": "full",
                "augment.rotation_step": "360", "export.captions": "jewelry"},
}


def set_param(text: str, key: str, value: str) -> str:
    """``params.yaml`` text with ``section.field`` set to ``value``, its comment kept."""
    import re

    section, name = key.split(".", 1)
    m = re.search(rf"(?m)^{re.escape(section)}:[^\n]*\n", text)
    if m is None:
        raise ValueError(f"no section {section!r} in params.yaml")
    line = re.compile(rf"(?m)^(  {re.escape(name)}:[ ]*)(\S+)(.*)$")
    found = line.search(text, m.end())
    if found is None:
        raise ValueError(f"no key {key!r} in params.yaml")
    return text[:found.start(2)] + value + text[found.end(2):]


def render_params(site_file: str, kind: str = "gems") -> str:
    """``params.yaml`` with every section and its defaults for ``kind``, scraping ``site_file``."""
    if kind not in KINDS:
        raise ProjectError(f"--kind {kind!r}: one of {', '.join(KINDS)}")
    text = template("params.yaml").replace("site: sites/demo.yaml", f"site: {site_file}", 1)
    for key, value in KINDS[kind].items():
        text = set_param(text, key, value)
    return text


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ProjectError(f"`{' '.join(cmd)}` failed: {(res.stderr or res.stdout).strip()[-1500:]}")


def _dvc() -> list[str]:
    from pipeline.core.tools import tool

    return tool("dvc")


# long: the steps of gemcurate init in the order a user sees them (refuse, write files, git, DVC,
# remote, first commit)
def init_project(dest: str | Path, site: str = "demo", base_url: str | None = None,
                 git: bool = True, platform: str = "demo", training: bool | None = None,
                 kind: str = "gems") -> list[Path]:
    """Scaffold a new curation project in ``dest`` (which must be empty or absent).

    Args:
        dest: The project folder.
        site: The first store's name (``sites/<site>.yaml``); ``demo`` is the bundled
            storefront's adapter.
        base_url: The store's address (default: the demo storefront's).
        git: Make it a git repository with a first commit (DVC needs git to version data).
        platform: The site template (``demo``, ``shopify``, ``woocommerce``, ``magento``).
        kind: ``gems`` or ``jewelry``: the params defaults for that kind of catalog
            (:data:`KINDS`).
        training: Write the train and evaluate stages (default: when TensorFlow is
            installed; without it ``dvc repro`` builds and exports the dataset only).

    Returns:
        The files written.

    Raises:
        ProjectError: ``dest`` is not empty, the name is malformed, git or DVC failed.
    """
    import re

    from pipeline.stages.validate import write_suites

    dest = Path(dest).resolve()
    if not re.fullmatch(SITE_NAME, site):
        raise ProjectError(f"--site {site!r}: a site name is lower case letters, digits, - and _")
    if dest.exists() and any(dest.iterdir()):
        raise ProjectError(f"{dest} exists and is not empty; `gemcurate init` starts a new project")
    if git and shutil.which("git") is None:
        raise ProjectError("git is not installed (DVC versions datasets in git); use --no-git")
    url = base_url or "http://127.0.0.1:8000"
    if not re.match(r"^https?://[^/]+", url):
        raise ProjectError(f"--base-url {url!r} is not an http(s) URL")
    dest.mkdir(parents=True, exist_ok=True)
    files = {
        "params.yaml": render_params(f"sites/{site}.yaml", kind),
        f"sites/{site}.yaml": render_site(site, url, platform),
        "dvc.yaml": render_dvc_yaml("lock", training_available() if training is None else training),
        ".gitignore": template("gitignore"),
        ".dvcignore": template("dvcignore"),
        "README.md": template("README.md").replace("{site}", site).replace("{base_url}", url),
        "dags/gemcurate_dags.py": template("gemcurate_dags.py"),  # `gemcurate airflow start` serves it
    }
    written = []
    for rel, text in files.items():
        write_text(dest / rel, text)
        written.append(dest / rel)
    written += write_suites(dest / "expectations")
    write_lock(dest)
    written.append(dest / LOCK)
    if git:
        _run(["git", "init", "-q"], dest)
    _run([*_dvc(), "init", "-q", *([] if git else ["--no-scm"])], dest)
    _run([*_dvc(), "config", "core.autostage", "false"], dest)
    _run([*_dvc(), "remote", "add", "-d", "local", "~/.cache/gemcurate/dvc-remote"], dest)
    if git:
        _run(["git", "add", "-A"], dest)
        has_id = subprocess.run(["git", "config", "user.email"], cwd=dest,
                                capture_output=True).returncode == 0
        _run(["git", *([] if has_id else GIT_ID), "commit", "-q", "-m",
              f"gemcurate init: a curation project for {site}"], dest)
    logger.info("initialised %s", dest)
    return written
