"""Shared fixtures: a real storefront process on an ephemeral port, params in tmp dirs,
a labelled image folder, a real S3 server on loopback (moto). Plain builders are in
``tests/helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.demo import process
from tests.helpers import ROOT, jpeg_bytes, params

_OWN_CACHE = "GEMCURATE_TEST_CACHE_OWNER"


def pytest_configure(config):
    """One gemcurate cache for the whole run, shared by the xdist workers (they inherit the
    environment of the process that starts them) and by every child: the storefronts' rendered
    images (``$GEMCURATE_CACHE/storefront``, written atomically, keyed by the drawing code)
    and the built ONNX graph. A catalog is drawn once per run, not once per worker and per
    process (the junk-heavy catalog three workers each drew cost 23 CPU-seconds a time), and
    nothing is read from or left in the user's own cache."""
    if not os.environ.get("GEMCURATE_CACHE"):
        import tempfile

        os.environ["GEMCURATE_CACHE"] = tempfile.mkdtemp(prefix="gemcurate-test-cache-")
        os.environ[_OWN_CACHE] = str(os.getpid())


def pytest_unconfigure(config):
    if os.environ.get(_OWN_CACHE) == str(os.getpid()):
        import shutil

        shutil.rmtree(os.environ["GEMCURATE_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def render_cache() -> Path:
    """The storefronts' render cache of this run (see :func:`pytest_configure`)."""
    from pipeline.demo.server import default_cache_dir

    return Path(default_cache_dir())


@pytest.fixture
def storefront(tmp_path, render_cache):
    """Factory: ``storefront(*flags)`` starts ``gemcurate store serve`` on a free port."""
    started: list[process.RunningStorefront] = []

    def start(*flags: str, port: int = 0) -> process.RunningStorefront:
        store = process.start(list(flags), port=port, log=tmp_path / f"store-{len(started)}.log",
                              cache_dir=render_cache, cwd=ROOT, timeout=60)
        started.append(store)
        return store

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def params_for(tmp_path):
    """Factory: validated Params with data under tmp_path and scrape overrides."""

    def make(data_dir: Path | None = None, **scrape) -> object:
        scrape.setdefault("progress", False)
        return params(data_dir or tmp_path / "data",
                      scrape={"site": str(ROOT / "sites" / "demo.yaml"), **scrape})

    return make


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A labelled folder tree <class>/<images> plus junk folders, all synthetic."""
    root = tmp_path / "folder"
    for ci, cls in enumerate(["rings", "necklace", "bracelet"]):
        d = root / "catalog" / cls
        d.mkdir(parents=True)
        for i in range(7):
            fmt = "PNG" if i == 3 else "JPEG"
            # a wrong extension on purpose, as in real data sets
            (d / f"{cls}_{i}.jpg").write_bytes(jpeg_bytes(200 + 10 * i, 180, seed=ci * 100 + i,
                                                          fmt=fmt))
    for kind in ("certificate", "hand"):
        d = root / kind
        d.mkdir()
        for i in range(3):
            (d / f"{kind}{i}.jpg").write_bytes(jpeg_bytes(300, 400, seed=1000 + i + 10 * len(kind)))
    return root


# the longest modules first (from `--durations` and the CPU list): pytest-xdist hands whole
# modules to workers in collection order when told `--no-loadscope-reorder` (scripts/test.sh;
# by default it sorts them by their number of tests), and longest-first keeps one worker from
# starting a five-minute module while the others have finished
LONGEST_FIRST = ("tests/e2e/test_airflow.py", "tests/e2e/test_dvc_pipeline.py",
                 "tests/e2e/test_celery.py", "tests/e2e/test_installed_wheel.py",
                 "tests/e2e/test_review_browser.py", "tests/e2e/test_curation_slice.py",
                 "tests/e2e/test_s3_pipeline.py", "tests/e2e/test_review_browser_labels.py",
                 "tests/test_heads.py", "tests/test_platforms.py", "tests/test_scrape.py")


# CPU seconds per test module (the test process and the children it has waited for: stages,
# stores, Airflow's processes), listed at the end beside --durations. On 2 cores the suite's
# wall time follows its CPU time: this says where to cut.
_CPU_LAST = [0.0]
_CPU_BY_MODULE: dict[str, float] = {}
_SPAN_BY_MODULE: dict[str, tuple[float, float]] = {}


def _cpu_now() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def pytest_collection_finish(session):
    _CPU_LAST[0] = _cpu_now()  # collection's imports are nobody's


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    now = _cpu_now()
    outcome.get_result().user_properties.append(("cpu_s", now - _CPU_LAST[0]))
    _CPU_LAST[0] = now


def pytest_runtest_logreport(report):
    module = report.nodeid.split("::")[0]
    cpu = dict(report.user_properties).get("cpu_s")
    if cpu:
        _CPU_BY_MODULE[module] = _CPU_BY_MODULE.get(module, 0.0) + cpu
    start, stop = getattr(report, "start", None), getattr(report, "stop", None)
    if start and stop:  # when each module ran: the end of the run shows who kept one core busy
        first, last = _SPAN_BY_MODULE.get(module, (start, stop))
        _SPAN_BY_MODULE[module] = (min(first, start), max(last, stop))


def pytest_terminal_summary(terminalreporter):
    if not _CPU_BY_MODULE:
        return
    top = sorted(_CPU_BY_MODULE.items(), key=lambda kv: -kv[1])
    terminalreporter.section("CPU seconds per module (tests and the children they waited for)")
    for module, cpu in top[:15]:
        terminalreporter.write_line(f"{cpu:8.1f}  {module}")
    terminalreporter.write_line(f"{sum(_CPU_BY_MODULE.values()):8.1f}  in all "
                                f"({len(_CPU_BY_MODULE)} modules)")
    if _SPAN_BY_MODULE:
        t0 = min(a for a, _ in _SPAN_BY_MODULE.values())
        terminalreporter.section("the modules that ended last (seconds from the first test)")
        for module, (a, b) in sorted(_SPAN_BY_MODULE.items(), key=lambda kv: -kv[1][1])[:8]:
            terminalreporter.write_line(f"{a - t0:7.0f} – {b - t0:4.0f}  {module}")


def pytest_collection_modifyitems(config, items):
    rank = {m: i for i, m in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.nodeid.split("::")[0], len(rank)))  # stable
    if os.environ.get("GEMCURATE_SKIP_SLOW"):
        skip = pytest.mark.skip(reason="GEMCURATE_SKIP_SLOW set")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """A small augmented dataset on disk (real crops, real variants), its params and labels."""
    from pipeline.core.config import load_params
    from pipeline.stages import augment, split
    from tests.helpers import crop_manifest

    tmp = tmp_path_factory.mktemp("ds")
    data = tmp / "data"
    p = load_params(None, {"augment": {"target_per_class": 40, "workers": 1},
                           "data": {"data_dir": str(data)}})
    df = crop_manifest(data, classes=3, products=12, per_product=2)
    sp, _ = split.run(df, p)
    out, _ = augment.run(sp, p, data_dir=data)
    labels = sorted(split.class_table(sp).index)
    return data, p, out, labels


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server over HTTP on a loopback port; the AWS variables point at it.

    Yields the endpoint URL. s3fs, boto3 and DVC's S3 remote in child processes all read
    ``AWS_ENDPOINT_URL``, as they would for MinIO in production.
    """
    import logging

    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"  # bound to loopback above
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint)
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def bucket(s3_server, request):
    """A new, empty bucket on the S3 server; yields its name."""
    import re

    import s3fs

    name = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(name)
    yield name
    fs.rm(name, recursive=True)
