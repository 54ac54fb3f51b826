"""What the Airflow DAGs (``dags/``) need, without Airflow: projects, names, commands, outcomes.

The DAG files only wire tasks together; every decision they take is made here, so it is
unit-tested without a scheduler:

* which projects and sites exist (:func:`discover`), and the DAG id, pool, assets and
  schedule of each (:class:`Project`);
* the command a task runs (:func:`scrape_command`, :func:`repro_command`, …) and running it
  with its output in the task log (:func:`run`);
* what an exit code of ``gemcurate scrape`` means to the scheduler (:func:`scrape_outcome`):
  a ban fails at once and alerts, a transient or incomplete crawl is retried, a robots.txt
  that disallows the store skips the run;
* what a published version and a trained model say in their asset events
  (:func:`dataset_event`, :func:`model_event`), and whether annotators decided anything
  the latest published version does not include (:func:`pending_decisions`).

A gemcurate project (``gemcurate init``) curates one store into one dataset: its
``params.yaml`` names the store's site file (``scrape.site``). ``GEMCURATE_PROJECTS`` lists
the projects the scheduler serves (``os.pathsep``-separated; default: the project the
``dags/`` folder sits in), one refresh DAG each.

Example:
    >>> from pipeline import orchestration as orch
    >>> orch.scrape_outcome(3)
    <Outcome.FAIL: 'fail'>
    >>> orch.pool_name("demo")
    'site_demo'
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.config import parse_yaml as _yaml
from pipeline.core.errors import ExitCode, UserError
from pipeline.core.tools import tool

logger = logging.getLogger(__name__)

DATASET_ASSET = "gemcurate://dataset/{name}"
MODEL_ASSET = "gemcurate://model/{name}"
QUEUE_DEFAULT = "default"
QUEUE_GPU = "gpu"
POOL_SLOTS = 1
PROJECTS_ENV = "GEMCURATE_PROJECTS"
BASE_URL_VARIABLE = "gemcurate_base_url__{site}"
TAGS = ("gemcurate",)
# retries with exponential backoff: 5, 10, 20 minutes (a store's bad hour, a worker lost)
RETRIES = 3
MAX_RETRY_DELAY_S = 3600
# workers the per-image work of dedupe, filter and crop is mapped over (gemcurate <stage> --shard i/n)



def retry_delay_s(env: dict | None = None) -> int:
    """The first retry's wait (``GEMCURATE_RETRY_DELAY_S``, default 300), read when the DAG
    file is parsed, not when this module was first imported."""
    return _env_int(env, "GEMCURATE_RETRY_DELAY_S", 300, 0, 86_400)


def shards(env: dict | None = None) -> int:
    """How many workers the per-image work is mapped over (``GEMCURATE_SHARDS``, 1–64, default 2)."""
    return _env_int(env, "GEMCURATE_SHARDS", 2, 1, 64)


def _env_int(env: dict | None, name: str, default: int, low: int, high: int) -> int:
    text = (os.environ if env is None else env).get(name, "")
    if not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        raise OrchestrationError(f"{name}={text[:40]!r}: a whole number from {low} to {high}") from None
    return max(low, min(high, value))
# the longest a task may run (its execution_timeout); Celery's visibility timeout must exceed it
TIMEOUTS_S = {"scrape": 48 * 3600, "curate": 12 * 3600, "validate": 2 * 3600, "export": 4 * 3600,
              "publish": 4 * 3600, "train": 24 * 3600, "evaluate": 4 * 3600}
# the schedule a site file gives, as Airflow takes it ("none": triggered by hand only)
PRESETS = {"none": None}


class OrchestrationError(UserError, RuntimeError):
    """A project or site the scheduler was pointed at is not usable; the message says why."""


class Outcome(enum.Enum):
    """What the scheduler does with a finished command."""

    SUCCESS = "success"
    RETRY = "retry"      # transient: raise, Airflow retries with backoff
    FAIL = "fail"        # permanent: fail at once, no retry, alert
    SKIP = "skip"        # nothing to do this time (robots.txt disallows the store)


def scrape_outcome(code: int) -> Outcome:
    """The scheduler's reading of ``gemcurate scrape``'s exit code (:class:`pipeline.core.errors.ExitCode`).

    0 complete; 3 banned (the store said stop: retrying makes it worse) → fail, no retry;
    4 incomplete (pages or images failed, 429/503s, timeouts) and 5 stopped (disk full, a
    signal) → retry, the rerun resumes; 6 robots.txt disallows the start URLs → skip (the
    last complete crawl stands); 2 a usage or config error → fail (a retry cannot fix a
    YAML); any other code (a crash, killed by a signal) → retry.
    """
    if code == ExitCode.OK:
        return Outcome.SUCCESS
    if code in (ExitCode.BANNED, ExitCode.USAGE):
        return Outcome.FAIL
    if code == ExitCode.DISALLOWED:
        return Outcome.SKIP
    return Outcome.RETRY


def command_outcome(code: int) -> Outcome:
    """Any other gemcurate or dvc command: 0 success, 2 (usage, config, refused) fail, else retry."""
    if code == ExitCode.OK:
        return Outcome.SUCCESS
    return Outcome.FAIL if code == ExitCode.USAGE else Outcome.RETRY


def pool_name(site: str) -> str:
    """The Airflow pool of a site: one slot, so two runs never crawl one store at once."""
    _check_name(site)
    return f"site_{site}"


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name or ""):
        raise OrchestrationError(f"{name!r} is not a site name ([a-z0-9_-])")
    return name


@dataclass(frozen=True)
class Project:
    """One gemcurate project as the scheduler sees it."""

    root: Path
    site: str
    site_file: Path
    schedule: str | None
    base_url: str

    @property
    def dag_id(self) -> str:
        return f"gemcurate_refresh__{self.site}"

    @property
    def pool(self) -> str:
        return pool_name(self.site)

    @property
    def dataset_uri(self) -> str:
        return DATASET_ASSET.format(name=self.site)

    @property
    def model_uri(self) -> str:
        return MODEL_ASSET.format(name=self.site)

    @property
    def base_url_variable(self) -> str:
        return BASE_URL_VARIABLE.format(site=self.site)


def project_roots(default: Path | None = None, env: dict | None = None) -> list[Path]:
    """The project folders of ``GEMCURATE_PROJECTS``, else ``[default]``."""
    env = os.environ if env is None else env
    raw = env.get(PROJECTS_ENV, "")
    roots = [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]
    return roots or ([default.resolve()] if default else [])


def load_project(root: Path) -> Project:
    """The project at ``root``: its params' site file, validated.

    Raises:
        OrchestrationError: Not a gemcurate project, or its site file does not load.
    """
    from pipeline.core.config import ConfigError, load_params
    from pipeline.stages.scrape.site import load_site

    root = Path(root)
    if not (root / "params.yaml").is_file() or not (root / "dvc.yaml").is_file():
        raise OrchestrationError(f"{root}: not a gemcurate project (params.yaml and dvc.yaml); "
                                 "start one with `gemcurate init DIR`")
    try:
        params = load_params(root / "params.yaml")
        site_file = Path(params.scrape.site)
        site_file = site_file if site_file.is_absolute() else root / site_file
        site = load_site(site_file)
    except ConfigError as exc:
        raise OrchestrationError(f"{root}: {exc}") from None
    schedule = site.schedule.strip()
    return Project(root=root.resolve(), site=_check_name(site.name), site_file=site_file.resolve(),
                   schedule=PRESETS.get(schedule, schedule), base_url=site.base_url)


def discover(default: Path | None = None, env: dict | None = None) -> list[Project]:
    """Every project the scheduler serves; two projects naming one site is an error."""
    projects = [load_project(r) for r in project_roots(default, env)]
    seen: dict[str, Path] = {}
    for p in projects:
        if p.site in seen:
            raise OrchestrationError(f"site {p.site!r} is curated by two projects ({seen[p.site]} and "
                                     f"{p.root}): one project per store")
        seen[p.site] = p.root
    return projects


# --------------------------------------------------------------------------- commands


def gemcurate_exe() -> list[str]:
    """``gemcurate`` of this interpreter's environment (a worker's venv), else from PATH."""
    return tool("gemcurate")


def dvc_exe() -> list[str]:
    return tool("dvc")


def check_base_url(url: str | None) -> str | None:
    """A base URL given at trigger time (DAG param or Variable): scheme + host (+ port) only."""
    if url is None or not str(url).strip():
        return None
    url = str(url).strip().rstrip("/")
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?", url):
        raise OrchestrationError(f"base_url {url!r}: give scheme and host (and port), e.g. "
                                 "http://127.0.0.1:8000")
    return url


def scrape_command(project: Project, base_url: str | None = None) -> list[str]:
    cmd = [*gemcurate_exe(), "scrape", "--no-progress", "--site", str(project.site_file)]
    url = check_base_url(base_url)
    return cmd + (["--base-url", url] if url else [])


def repro_command(stage: str) -> list[str]:
    """``dvc repro STAGE``: that stage and everything it depends on, skipping what is current."""
    if not re.fullmatch(r"[a-z_]+", stage):
        raise OrchestrationError(f"{stage!r} is not a stage name")
    return [*dvc_exe(), "repro", stage]


def shard_command(stage: str, shard: int, shards: int) -> list[str]:
    return [*gemcurate_exe(), stage, "--no-progress", "--shard", f"{shard}/{shards}"]


def snapshot_command() -> list[str]:
    return [*gemcurate_exe(), "snapshot"]


def publish_command() -> list[str]:
    return [*gemcurate_exe(), "publish"]


def run(cmd: list[str], cwd: Path, timeout: float | None = None) -> int:
    """Run ``cmd`` in ``cwd``, every output line into the log as it comes; the exit code.

    The command runs in its own process group: when the task is killed or times out,
    the whole group (dvc's children included) is stopped, never left running.
    """
    logger.info("$ %s   (in %s)", " ".join(cmd), cwd)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True, env=env)

    def pump() -> None:  # a thread, so a silent or hung command still meets its timeout
        assert proc.stdout is not None
        for line in proc.stdout:
            logger.info("%s", line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except BaseException:  # timeout, or the task itself is being killed
        stop_group(proc)
        raise
    reader.join(timeout=10)  # a daemon left behind by the command may hold the pipe open
    return code


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL what is left of it after ``grace`` s; reap.

    The whole group, not only its leader: a leader that exits on SIGTERM may leave its
    children running (``airflow standalone`` does), and they are stopped too.
    """
    pgid = proc.pid  # started with start_new_session: the group id is the leader's pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader as soon as it exits
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait()


# --------------------------------------------------------------------------- what runs reported


def validation_failures(root: Path, data_dir: str = "data") -> str:
    """The validation summary (failed expectations with example rows), or ``""`` if it passed."""
    from pipeline.core.validation import result_path, summary_path

    res = result_path(root / data_dir)
    if not res.exists():
        return "validation did not run (no validate/result.json)"
    result = json.loads(res.read_text())
    if result.get("success"):
        return ""
    summary = summary_path(root / data_dir)
    return summary.read_text() if summary.exists() else "validation failed"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()


def latest_version(root: Path, prefix: str = "dataset/v") -> tuple[str, dt.datetime] | None:
    """The newest published tag and when it was made, or ``None``."""
    out = _git(root, "for-each-ref", "--sort=-creatordate", "--count=1",
               "--format=%(refname:short) %(creatordate:iso-strict)", f"refs/tags/{prefix}*")
    if not out:
        return None
    tag, when = out.rsplit(" ", 1)
    return tag, dt.datetime.fromisoformat(when)


def trains(root: Path) -> bool:
    """Whether the project's ``dvc.yaml`` has the train stage (a dataset-only one has not)."""
    from pipeline.project import dvc_yaml_trains

    return dvc_yaml_trains(root, default=True)


def dead_links(root: Path, data_dir: str = "data") -> str | None:
    """What a crawl that completed with dead links could not get, as an alert's text.

    ``None`` when the latest ``raw_summary.json`` lists no dead URL (or there is none yet).
    The refresh DAG publishes such a crawl and sends this as a warning, naming the URLs.
    """
    path = Path(root) / data_dir / "manifests" / "raw_summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    listed = summary.get("dead_urls") or []
    total = int(summary.get("dead_urls_total") or len(listed))
    if not total:
        return None
    lines = [f"{total} dead URL(s) not read (given up on; retried at the next full pass; what "
             "they listed keeps its last known rows):"]
    for row in listed[:20]:
        lines.append(f"  {row.get('kind', '?')} {row.get('url', '?')}: {row.get('detail', '')} "
                     f"(since {row.get('since') or '?'})")
    if total > 20:
        lines.append(f"  … {total - 20} more in {path}")
    return "\n".join(lines)


def dataset_event(root: Path, data_dir: str = "data", prefix: str = "dataset/v") -> dict:
    """The ``extra`` of a dataset asset event: version tag, DVC revision, image and class counts."""
    from pipeline.core import manifest

    latest = latest_version(root, prefix)
    if latest is None:
        raise OrchestrationError(f"{root}: nothing published ({prefix}* tags)")
    tag = latest[0]
    ds = manifest.read_manifest(root / data_dir / "dataset" / "manifest.parquet")
    return {"version": tag, "dvc_rev": _git(root, "rev-parse", f"{tag}^{{commit}}"),
            "images": len(ds), "classes": int(ds["label"].nunique()),
            "splits": {s: int((ds["split"] == s).sum()) for s in manifest.SPLITS}}


def model_event(root: Path, data_dir: str = "data", version: str | None = None) -> dict:
    """The ``extra`` of a model asset event: the evaluation figures and what was trained on."""
    m = json.loads((root / data_dir / "metrics" / "evaluate.json").read_text())
    out = {k: m.get(k) for k in ("model", "split", "images", "classes", "top1", "top3", "top5")}
    out["macro_f1"] = (m.get("macro") or {}).get("f1")
    out["dataset_version"] = version
    out["model_path"] = str(root / "models" / "model.keras")
    return out


def check_event(extra: dict | None) -> dict:
    """A triggering dataset event's ``extra``, checked (it is read from the metadata DB)."""
    extra = dict(extra or {})
    version = extra.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,80}", version):
        raise OrchestrationError(f"the dataset event names no valid version: {extra!r}")
    rev = extra.get("dvc_rev")
    if rev is not None and not (isinstance(rev, str) and re.fullmatch(r"[0-9a-f]{7,64}", rev)):
        raise OrchestrationError(f"the dataset event's dvc_rev {rev!r} is not a git revision")
    return extra


def head_has_version(root: Path, extra: dict) -> bool:
    """Whether the project's checkout still holds the version the event announced."""
    head = _git(root, "rev-parse", "HEAD")
    want = extra.get("dvc_rev") or _git(root, "rev-parse", f"{extra['version']}^{{commit}}")
    return head == want


def pending_decisions(root: Path, data_dir: str = "data", prefix: str = "dataset/v") -> int:
    """Annotator decisions made after the latest published version (all, if none is)."""
    import sqlalchemy as sa

    from pipeline.core import decisions
    from pipeline.core.config import load_params

    params = load_params(root / "params.yaml")
    url = decisions.db_url(params.data.review_db, root / data_dir)
    if not params.data.review_db and not (root / data_dir / "state" / "reviews.sqlite").exists():
        return 0
    latest = latest_version(root, prefix)
    engine = decisions.connect(url)
    try:
        with engine.connect() as c:
            table = decisions.decisions_table
            q = sa.select(sa.func.count()).select_from(table)
            if latest is not None:
                since = latest[1].astimezone(dt.UTC)
                if engine.dialect.name == "sqlite":  # stored as naive UTC text
                    since = since.replace(tzinfo=None)
                q = q.where(table.c.decided_at > since)
            return int(c.execute(q).scalar_one())
    finally:
        engine.dispose()


def unchanged_since_latest(root: Path, prefix: str = "dataset/v", data_dir: str = "data") -> bool:
    """Whether the exported dataset is the one the latest published version holds.

    Compares the checksum of ``<data_dir>/dataset`` (the ``export`` stage's output) in the
    working tree's ``dvc.lock`` with the latest tag's. Only the dataset counts: a refresh
    that saw the same images changes the raw manifest (fetch times) and the stages'
    timing metrics, and a model trained since changes other stages; none is a new version.
    """

    latest = latest_version(root, prefix)
    if latest is None or not (root / "dvc.lock").exists():
        return False
    try:
        then = subprocess.run(["git", "show", f"{latest[0]}:dvc.lock"], cwd=root, capture_output=True,
                              text=True, check=True).stdout
    except subprocess.CalledProcessError:
        return False

    def outs(text: str):
        stage = ((_yaml(text, "dvc.lock") or {}).get("stages") or {}).get("export") or {}
        return [o.get("md5") for o in stage.get("outs") or [] if o.get("path") == f"{data_dir}/dataset"]

    now = outs((root / "dvc.lock").read_text())
    return bool(now) and now == outs(then)
