"""The ``gemcurate`` command line: a subcommand per stage, plus ``init``, ``store`` and friends.

Commands that work on a project (scrape, the stages, snapshot, publish, decide …)
find it from the working directory upwards, like git and DVC, and run in its root;
outside a project they say so and name ``gemcurate init``.

Example:
    $ gemcurate init ~/gems && cd ~/gems
    $ gemcurate store serve --port 8000 &
    $ gemcurate scrape && dvc repro
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from pipeline.core.config import PLATFORMS, ConfigError, load_params
from pipeline.core.errors import ExitCode, UserError
from pipeline.core.paths import find_project_root
from pipeline.core.text import printable
from pipeline.demo.options import add_catalog_flags, catalog_options
from pipeline.stages.registry import STAGES

logger = logging.getLogger("gemcurate")

# argparse destinations that hold paths the user typed (made absolute before the CLI
# moves to the project root, so they keep meaning what they meant where they were typed)
PATH_ARGS = ("params", "data_dir", "site", "out", "csv", "port_file", "cache_dir", "catalog", "image",
             "images", "model", "embeddings", "examples", "realdata", "out_dir")


class NotInProject(UserError):
    """A project command ran outside any gemcurate project."""


# --------------------------------------------------------------------------- commands


def cmd_init(a: argparse.Namespace) -> int:
    from pipeline.project import dvc_yaml_trains, init_project

    files = init_project(a.dir, site=a.site, base_url=a.base_url, git=not a.no_git,
                         platform=a.platform, training=a.training, kind=a.kind)
    root = Path(a.dir).resolve()
    print(f"initialised a gemcurate project in {root} ({len(files)} files"
          f"{', git + DVC' if not a.no_git else ', DVC without git'})")
    print(f"  store adapter  sites/{a.site}.yaml ({a.platform} template)   parameters  params.yaml   "
          "pipeline  dvc.yaml")
    print(f"next:  cd {root}")
    if not a.base_url:
        layout = "" if a.platform == "demo" else f" --layout {a.platform}"
        print(f"       gemcurate store serve --port 8000{layout} &    # the bundled demo store")
    if a.platform != "demo" or a.base_url:
        print(f"       gemcurate site check sites/{a.site}.yaml       # what each selector finds")
    print("       gemcurate scrape && dvc repro && gemcurate publish")
    if not dvc_yaml_trains(root):
        print("note:  TensorFlow is not installed, so dvc.yaml builds, validates and exports the "
              "dataset\n       without the train and evaluate stages; to train: pip install "
              "'gemcurate[train]' && gemcurate dvc-yaml --training")
    return 0


def cmd_store_serve(a: argparse.Namespace) -> int:
    from pipeline.demo.server import ServerOptions, default_cache_dir, serve

    if a.rate_limit <= 0:
        raise ConfigError("--rate-limit: must be positive")
    if not 0 <= a.faults <= 1:
        raise ConfigError("--faults: must be a probability in [0, 1]")
    if a.dead_links < 0 or (a.dead_links and a.layout != "demo"):
        raise ConfigError("--dead-links: a count of 0 or more, with the demo layout")
    opts = ServerOptions(rate_limit=a.rate_limit, burst=a.burst, faults=a.faults,
                         ban_strikes=a.ban_strikes, ban_seconds=a.ban_seconds,
                         page_size=a.page_size, fault_seed=a.seed, layout=a.layout,
                         dead_links=a.dead_links,
                         cache_dir=None if a.no_cache else (a.cache_dir or default_cache_dir()))
    serve(catalog_options(a), opts, a.host, a.port, a.port_file)
    return 0


def cmd_store_truth(a: argparse.Namespace) -> int:
    from pipeline.demo.server import write_truth

    truth = write_truth(catalog_options(a), a.out, a.layout)
    junk: dict[str, int] = {}
    for im in truth["images"]:
        junk[str(im["junk"])] = junk.get(str(im["junk"]), 0) + 1
    print(f"wrote {a.out}: {len(truth['products'])} products, {len(truth['images'])} images, "
          f"junk {json.dumps(junk)}")
    return 0


def cmd_scrape(a: argparse.Namespace) -> int:
    from pipeline.project import refresh_lock
    from pipeline.stages.scrape import format_summary, scrape
    from pipeline.stages.scrape.site import load_site

    overrides = {"data": {"data_dir": a.data_dir, "state_db": a.state_db},
                 "scrape": {"site": a.site, "base_url": a.base_url, "max_rate": a.max_rate,
                            "concurrency": a.concurrency}}
    if a.no_progress:
        overrides["scrape"]["progress"] = False
    params = _params(a, overrides)
    site = load_site(params.scrape.site, params.scrape.base_url)
    refresh_lock()
    res = scrape(params, site)
    print(format_summary(res, site))
    return res.exit_code


def cmd_site_check(a: argparse.Namespace) -> int:
    import dataclasses

    from pipeline.core.config import ScrapeParams
    from pipeline.stages.scrape.check import check_site
    from pipeline.stages.scrape.site import load_site

    site = load_site(a.file, a.base_url)
    sp = load_params(a.params).scrape if Path(a.params).exists() else ScrapeParams()
    sp = dataclasses.replace(sp, progress=False, max_rate=a.max_rate or sp.max_rate)
    print(f"gemcurate site check {a.file}: {site.name} at {site.base_url} "
          f"(user agent {sp.user_agent!r})")
    rep = check_site(site, sp)
    print(rep.format(a.show))
    return 0 if rep.ok else 1


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


def cmd_demo(a: argparse.Namespace) -> int:
    from pipeline.interfaces.demo import run_demo

    _params(a)
    store_args = ["--seed", str(a.seed), "--rate-limit", str(a.rate_limit), *a.store_args]
    return run_demo(a.params, a.data_dir, store_args, scrape_only=a.scrape_only,
                    publish=not a.no_publish)


def cmd_train_head(a: argparse.Namespace, params) -> int:
    """``gemcurate filter train-head``: a project's own junk head, versioned by its hash."""
    from pipeline.core.embedding import EmbeddingCache
    from pipeline.core.stageio import StageIO
    from pipeline.stages.filter import head as heads

    if not 1 <= a.per_label <= 100_000:
        raise UserError("--per-label must be 1..100000")
    # the folders a person typed are read first: a wrong path is said at once, not after the
    # generated bank (minutes at the default size) is drawn
    if a.realdata and not Path(a.realdata).is_dir():
        raise UserError(f"--realdata {a.realdata}: no such folder")
    given = heads.examples_from_folder(a.examples) if a.examples else []
    examples = heads.bank(a.per_label, a.realdata) + given
    emb = None
    n_decisions = 0
    if not a.no_decisions:
        io = StageIO.of(params, a.data_dir)
        try:
            manifest = io.read("raw")
        except (OSError, UserError):
            manifest = None
        found = heads.examples_from_decisions(io.decisions(), manifest,
                                              io.images(manifest) if manifest is not None else ".")
        n_decisions = len(found)
        examples += found
        emb = EmbeddingCache.for_data_dir(io.data_dir)
    head, manifest_ = heads.train(examples, embeddings=emb, progress=not a.no_progress)
    path = heads.save_versioned(head, manifest_, a.out_dir or "heads")
    print(json.dumps({"head": str(path), "decisions_used": n_decisions, **manifest_["metrics"]}, indent=2))
    print(f"use it: set filter.head: {path} in params.yaml (then dvc repro)")
    return 0


def cmd_stage(a: argparse.Namespace) -> int:
    from pipeline.project import require_current_lock

    params = _params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    if getattr(a, "write_suites", False):
        from pipeline.stages.validate import write_suites

        for path in write_suites():
            print(f"wrote {path}")
        return 0
    if getattr(a, "action", None) == "train-head":
        return cmd_train_head(a, params)
    require_current_lock(find_project_root(), a.cmd)
    module = importlib.import_module(f"pipeline.stages.{a.cmd}")
    extra = {"reset": True} if getattr(a, "reset", False) else {}
    if getattr(a, "verify", False):  # hash every blob read, whatever the record of checks says
        os.environ["GEMCURATE_VERIFY"] = "full"
    if getattr(a, "shard", None):
        from pipeline.core.resultcache import parse_shard

        try:
            extra["shard"] = parse_shard(a.shard)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    result = module.main(params, progress=False if a.no_progress else None, **extra)
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    from pipeline.project.verify import verify_data_dir

    params = _params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    report = verify_data_dir(params, progress=not a.no_progress and sys.stderr.isatty())
    for line in report.lines():
        print(printable(line))
    return 0 if report.ok else 1


def cmd_snapshot(a: argparse.Namespace) -> int:
    from pipeline.project import refresh_lock
    from pipeline.stages.publish import repo_root, snapshot

    refresh_lock()
    store = _params(a).data.store_root
    for f in snapshot(repo_root(), a.data_dir, store if store and "://" in store else None):
        print(f"tracked {f}")
    return 0


def cmd_publish(a: argparse.Namespace) -> int:
    from pipeline.project import require_current_lock
    from pipeline.stages.publish import publish

    params = _params(a, {"publish": {"push": False}} if a.no_push else {})
    require_current_lock(find_project_root())
    res = publish(params, data_dir=a.data_dir)
    print(f"published {res.tag} ({res.images:,} images) at commit {res.commit[:10]}"
          f"{'; pushed to the DVC remote' if res.pushed else ''}")
    print(f"dataset card: {res.card}")
    return 0


def cmd_pull(a: argparse.Namespace) -> int:
    from pipeline.stages.publish import pull

    n = pull(a.version, Path(a.out), a.repo)
    print(f"{a.out}: {n:,} images, checksums verified")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from pipeline.stages.predict import predict

    params = _params(a)
    answers = predict(a.images, params, a.model or "models")
    if a.json:
        print(json.dumps(answers, indent=2))
    else:
        for ans in answers:
            if "error" in ans:
                print(f"{ans['path']}: error: {ans['error']}")
            else:
                best = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in ans["top5"])
                print(f"{ans['path']}: {best}")
    return 1 if any("error" in x for x in answers) else 0


def cmd_similar(a: argparse.Namespace) -> int:
    from pipeline.stages.predict import similar

    params = _params(a)
    ans = similar(a.image, params, a.model or "models",
                  a.embeddings or Path(params.data.data_dir) / "evaluate" / "embeddings.parquet", a.k)
    if a.json:
        print(json.dumps(ans, indent=2))
    elif "error" in ans:
        print(f"{ans['path']}: error: {ans['error']}")
    else:
        for r in ans["similar"]:
            print(f"{r['similarity']:.3f}  {r['product_id']}  {r['label']}  {r['image_id'][:12]}")
    return 1 if "error" in ans else 0


def cmd_lock(a: argparse.Namespace) -> int:
    from pipeline.project import LOCK, stale_stages, write_lock

    root = _root()
    if a.check:
        stale = stale_stages(root)
        print(f"{LOCK}: " + (f"stale for {', '.join(stale)}" if stale else "current"))
        return 1 if stale else 0
    changed = write_lock(root)
    print(f"{LOCK}: " + (f"updated ({', '.join(changed)} changed)" if changed else "current"))
    return 0


def cmd_dvc_yaml(a: argparse.Namespace) -> int:
    from pipeline.project import dvc_yaml_mode, dvc_yaml_trains, render_dvc_yaml, training_available

    root = _root()
    mode = a.mode or dvc_yaml_mode(root)
    training = dvc_yaml_trains(root) if a.training is None else a.training
    if training and a.training and not training_available():
        raise UserError("--training: TensorFlow and Keras are not installed here; "
                        "pip install 'gemcurate[train]' first")
    text = render_dvc_yaml(mode, training)
    path = root / "dvc.yaml"
    if a.check:
        same = path.exists() and path.read_text() == text
        print(f"dvc.yaml: {'current' if same else 'differs from pipeline/stages/registry.py'} ({mode} mode)")
        return 0 if same else 1
    from pipeline.core.atomic import write_text

    write_text(path, text)
    print(f"wrote {path} ({mode} mode)")
    return 0


def cmd_decide(a: argparse.Namespace) -> int:
    from pipeline.core import decisions

    params = _params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    db = decisions.open_db(params.data.review_db, params.data.data_dir)
    if a.decisions_cmd == "list":
        df = db.history() if a.all else db.latest()
        # reasons, notes and labels come from CSVs and web forms: escape control characters
        df = df.map(lambda v: printable(v) if isinstance(v, str) else v)
        print(df.to_string(index=False) if len(df) else "no decisions yet")
        return 0
    known = decisions.known_of_project(db, params.data.data_dir)
    if a.decisions_cmd == "import":
        n = db.record_many(decisions.read_csv(a.csv), known, new_class=a.new_class)
        print(f"imported {n} decision(s) from {printable(a.csv)}")
        return 0
    db.record(a.image_id, a.decision, a.by, label=a.label, reason=a.reason, note=a.note,
              known=known, new_class=a.new_class)
    print(printable(f"{a.image_id}: {a.decision}{' → ' + a.label if a.label else ''} by {a.by}"))
    return 0


def cmd_decisions_export(a: argparse.Namespace) -> int:
    from pipeline.core import decisions
    from pipeline.core.atomic import write_text
    from pipeline.interfaces.review.app import export_csv

    params = _params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    db = decisions.open_db(params.data.review_db, params.data.data_dir)
    import io

    buf = io.StringIO()
    n = export_csv(db, buf)
    write_text(Path(a.csv), buf.getvalue())
    print(f"wrote {a.csv} ({n} decision(s))")
    return 0


def cmd_review(a: argparse.Namespace) -> int:
    params = _params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    data_dir = Path(params.data.data_dir).absolute()
    if a.review_cmd == "add-user":
        import getpass

        from pipeline.interfaces.review.accounts import AppDB, app_url

        if a.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {a.name}: ")
            if getpass.getpass("again: ") != password:
                raise UserError("the passwords differ; nothing changed")
        AppDB(app_url(params.data.review_db, data_dir)).add_user(a.name, a.role, password,
                                                                 replace=a.reset_password)
        print(f"{'updated' if a.reset_password else 'added'} {a.role} {a.name}")
        return 0
    from pipeline.interfaces.review import serve

    serve(params, data_dir, a.host, a.port, root=find_project_root(), port_file=a.port_file,
          secure_cookies=a.secure_cookies, trusted_proxies=a.trusted_proxies)
    return 0


# --------------------------------------------------------------------------- project


def _port(text: str) -> int:
    """A TCP port for a server option (1–65535)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1–65535)")
    return port


def _root() -> Path:
    root = find_project_root()
    if root is None:
        raise NotInProject(f"not inside a gemcurate project (no params.yaml and dvc.yaml in "
                           f"{Path.cwd()} or above); start one with `gemcurate init DIR`")
    return root


def _params(a: argparse.Namespace, overrides: dict | None = None):
    """The project's params (``--params`` given explicitly works anywhere)."""
    if getattr(a, "params", None) in (None, "params.yaml") and find_project_root() is None \
            and not Path("params.yaml").exists():
        _root()  # raises NotInProject
    from pipeline.stages.filter.checks import REGISTRY

    params = load_params(a.params, overrides)
    params.filter.check_names(REGISTRY)  # a typo'd check fails now, not at the filter stage
    return params


def _enter_project(a: argparse.Namespace) -> None:
    """Run a project command from the project's root (found upwards, like git and DVC)."""
    if not getattr(a, "in_project", False):
        return
    root = find_project_root()
    if root is None or root == Path.cwd().resolve():
        return
    for name in PATH_ARGS:
        value = getattr(a, name, None)
        if isinstance(value, str) and value != "params.yaml":
            setattr(a, name, os.path.abspath(value))
        elif isinstance(value, list) and name == "images":
            setattr(a, name, [os.path.abspath(v) for v in value])
    os.chdir(root)


# --------------------------------------------------------------------------- parser


def _project(p: argparse.ArgumentParser, data_dir_default: str | None = None) -> None:
    p.add_argument("--params", default="params.yaml", help="default: the project's params.yaml")
    p.add_argument("--data-dir", default=data_dir_default, help="default: params data.data_dir")
    p.set_defaults(in_project=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gemcurate", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="count", default=0)
    sub = ap.add_subparsers(dest="cmd", required=True)

    i = sub.add_parser("init", help="start a new curation project (git + DVC + params + site)")
    i.add_argument("dir")
    i.add_argument("--site", default="demo", help="the first store's name (sites/<site>.yaml)")
    i.add_argument("--base-url", help="the store's address (default: the demo storefront's)")
    i.add_argument("--no-git", action="store_true", help="DVC without git (no dataset versions)")
    i.add_argument("--platform", choices=PLATFORMS, default="demo",
                   help="start the site adapter from this platform's commented template")
    i.add_argument("--kind", choices=["gems", "jewelry"], default="gems",
                   help="the kind of catalog: its params defaults (jewelry: keep pieces the frame "
                        "cuts and worn pieces)")
    i.add_argument("--training", action=argparse.BooleanOptionalAction, default=None,
                   help="write the train and evaluate stages (default: when TensorFlow is "
                        "installed, as with pip install 'gemcurate[train]')")
    i.set_defaults(func=cmd_init)

    store = sub.add_parser("store", help="the demo storefront")
    ssub = store.add_subparsers(dest="store_cmd", required=True)
    s = ssub.add_parser("serve", help="serve the demo store over HTTP")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    s.add_argument("--port-file", help="write the bound port here once listening")
    s.add_argument("--rate-limit", type=float, default=20.0, help="requests/s per client")
    s.add_argument("--burst", type=int, default=5, help="token-bucket capacity per client")
    s.add_argument("--faults", type=float, default=0.02,
                   help="probability of an injected fault (slow, 503, reset) per request")
    s.add_argument("--ban-strikes", type=int, default=5,
                   help="requests inside a Retry-After window before a ban")
    s.add_argument("--ban-seconds", type=float, default=120.0)
    s.add_argument("--page-size", type=int, default=12)
    s.add_argument("--dead-links", type=int, default=0, metavar="N",
                   help="a store that never fully answers: the first category lists N deleted "
                        "products (404) and N products show one image that always answers 500 "
                        "(demo layout)")
    s.add_argument("--layout", choices=PLATFORMS, default="demo",
                   help="serve the catalog with this platform's URLs, HTML and JSON (same images)")
    s.add_argument("--cache-dir", help="rendered-image cache (default ~/.cache/gemcurate)")
    s.add_argument("--no-cache", action="store_true", help="render every image on demand")
    add_catalog_flags(s)
    s.set_defaults(func=cmd_store_serve)
    t = ssub.add_parser("truth", help="write the catalog's ground truth (never served)")
    t.add_argument("--out", required=True)
    t.add_argument("--layout", choices=PLATFORMS, default="demo",
                   help="the URLs of this layout (the same catalog otherwise)")
    add_catalog_flags(t)
    t.set_defaults(func=cmd_store_truth)

    sc = sub.add_parser("scrape", help="crawl a store into the image store and raw.parquet")
    _project(sc)
    sc.add_argument("--site", help="site adapter YAML (default: params scrape.site)")
    sc.add_argument("--base-url", help="override the site's base_url")
    sc.add_argument("--state-db", help="SQLAlchemy URL of the crawl state")
    sc.add_argument("--max-rate", type=float, help="cap on requests/s per host")
    sc.add_argument("--concurrency", type=int)
    sc.add_argument("--no-progress", action="store_true")
    sc.set_defaults(func=cmd_scrape)

    si = sub.add_parser("site", help="site adapters (sites/<name>.yaml)")
    sisub = si.add_subparsers(dest="site_cmd", required=True)
    chk = sisub.add_parser("check", help="fetch one listing and one product politely and print "
                                         "what each key of the YAML finds")
    chk.add_argument("file", help="the site adapter YAML")
    chk.add_argument("--base-url", help="override the file's base_url")
    chk.add_argument("--params", default="params.yaml",
                     help="politeness settings from this params file when it exists (else defaults)")
    chk.add_argument("--max-rate", type=float, help="cap on requests/s (default: params scrape.max_rate)")
    chk.add_argument("--show", type=int, default=3, help="values shown per key")
    chk.set_defaults(func=cmd_site_check)

    for stage in STAGES:
        st = sub.add_parser(stage.name, help=stage.help)
        _project(st)
        st.add_argument("--no-progress", action="store_true")
        if stage.name == "filter":
            st.add_argument("action", nargs="?", choices=["train-head"],
                            help="train-head: fit this project's junk head (certificate / hand / "
                                 "product) on the bank, --examples and the annotators' decisions")
            st.add_argument("--examples", help="train-head: a folder of product/, certificate/, hand/")
            st.add_argument("--realdata", help="train-head: a folder with the licensed hands/ and "
                                               "documents/ samples")
            st.add_argument("--no-decisions", action="store_true",
                            help="train-head: leave the annotators' decisions out")
            st.add_argument("--per-label", type=int, default=240,
                            help="train-head: generated bank images per class and look "
                                 "(two looks per class; default 240)")
            st.add_argument("--out-dir", help="train-head: where the head goes (default: heads/ "
                                              "in the project)")
        if stage.name == "split":
            st.add_argument("--reset", action="store_true",
                            help="forget earlier assignments (a new split; breaks stability)")
        if stage.name in ("dedupe", "filter", "crop"):
            st.add_argument("--verify", action="store_true",
                            help="hash every image read (default: a blob whose stat is unchanged "
                                 "since it was last hashed is trusted)")
            st.add_argument("--shard", metavar="I/N",
                            help="compute only share I of N of the per-image work into the stage's "
                                 "cache (scale-out); the next full run reuses it")
        if stage.name == "validate":
            st.add_argument("--write-suites", action="store_true",
                            help="regenerate expectations/*.json from pipeline/core/manifest.py and exit")
        st.set_defaults(func=cmd_stage)

    vf = sub.add_parser("verify", help="check a whole data folder (store, manifests, caches, "
                                       "ledger, dataset shards) and say what is damaged")
    _project(vf)
    vf.add_argument("--no-progress", action="store_true")
    vf.set_defaults(func=cmd_verify)

    sn = sub.add_parser("snapshot", help="track the scraped raw data with DVC (dvc add)")
    _project(sn, "data")
    sn.set_defaults(func=cmd_snapshot)
    pb = sub.add_parser("publish", help="tag dataset/vYYYY.MM.DD and push it to the DVC remote")
    _project(pb, "data")
    pb.add_argument("--no-push", action="store_true")
    pb.set_defaults(func=cmd_publish)
    pl = sub.add_parser("pull", help="get a published dataset version and verify its checksums")
    pl.add_argument("--version", required=True, help="YYYY.MM.DD[.N] or the full tag")
    pl.add_argument("--out", required=True)
    pl.add_argument("--repo", help="git URL or path of the repository (default: this one)")
    pl.set_defaults(func=cmd_pull)

    pr = sub.add_parser("predict", help="top-5 classes of photos (the pipeline's crop, then the model)")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--model", help="folder with model.keras and labels.json (default: models/)")
    pr.add_argument("--json", action="store_true", help="a JSON list, one object per image")
    _project(pr)
    pr.set_defaults(func=cmd_predict)
    si = sub.add_parser("similar", help="the nearest other products to a photo (model embeddings)")
    si.add_argument("image")
    si.add_argument("--k", type=int, default=10)
    si.add_argument("--model", help="default: models/")
    si.add_argument("--embeddings", help="default: data/evaluate/embeddings.parquet")
    si.add_argument("--json", action="store_true")
    _project(si)
    si.set_defaults(func=cmd_similar)

    lk = sub.add_parser("lock", help="record the code each stage runs (.gemcurate/code.yaml)")
    lk.add_argument("--check", action="store_true", help="exit 1 if the lock is stale")
    lk.set_defaults(func=cmd_lock, in_project=True)
    dy = sub.add_parser("dvc-yaml", help="write dvc.yaml from the stage registry")
    dy.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml differs")
    dy.add_argument("--mode", choices=["files", "lock"],
                    help="code as file deps (a gemcurate checkout) or the code lock (default: "
                    "by kind of project)")
    dy.add_argument("--training", action=argparse.BooleanOptionalAction, default=None,
                    help="with (or without) the train and evaluate stages (default: as the "
                         "current dvc.yaml has them)")
    dy.set_defaults(func=cmd_dvc_yaml, in_project=True)

    de = sub.add_parser("decide", help="record an annotator decision for one image")
    de.add_argument("image_id")
    de.add_argument("decision", choices=["accept", "reject", "relabel"])
    de.add_argument("--label", help="new label (relabel only): a class of the project")
    de.add_argument("--new-class", action="store_true",
                    help="let --label name a class the project does not have yet")
    de.add_argument("--by", required=True, help="who decided")
    de.add_argument("--reason", help="the review_reason this answers")
    de.add_argument("--note")
    _project(de)
    de.set_defaults(func=cmd_decide, decisions_cmd="decide")
    ds = sub.add_parser("decisions", help="list or import annotator decisions")
    dsub = ds.add_subparsers(dest="decisions_cmd", required=True)
    dl = dsub.add_parser("list", help="decisions in force (--all: the full history)")
    dl.add_argument("--all", action="store_true")
    di = dsub.add_parser("import", help="append decisions from a CSV "
                         "(image_id,decision,label,reviewer[,decided_at,reason,note])")
    di.add_argument("csv")
    di.add_argument("--new-class", action="store_true",
                    help="let relabels name classes the project does not have yet")
    for x in (dl, di):
        _project(x)
        x.set_defaults(func=cmd_decide)

    dx = dsub.add_parser("export", help="write every decision (the full history) to a CSV, for audits")
    dx.add_argument("csv")
    _project(dx)
    dx.set_defaults(func=cmd_decisions_export)

    rv = sub.add_parser("review", help="the annotators' review app: serve, add-user")
    rsub = rv.add_subparsers(dest="review_cmd", required=True)
    rs = rsub.add_parser("serve", help="serve the review queue over HTTP (login required)")
    rs.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve a team (put TLS in front)")
    rs.add_argument("--secure-cookies", action="store_true",
                    help="mark the session cookie Secure (the app is reached over HTTPS only)")
    rs.add_argument("--trusted-proxies", type=int, default=0, metavar="N",
                    help="N reverse proxies in front set X-Forwarded-For/-Proto: the client "
                         "address and HTTPS (Secure cookies) come from them (default 0: none)")
    rs.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    rs.add_argument("--port-file", help="write the bound port here once listening")
    _project(rs)
    rs.set_defaults(func=cmd_review)
    ru = rsub.add_parser("add-user", help="create an account (the password is asked, or read from stdin)")
    ru.add_argument("name")
    ru.add_argument("--role", choices=["annotator", "lead"], default="annotator")
    ru.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    ru.add_argument("--reset-password", action="store_true", help="the account exists: set a new password")
    _project(ru)
    ru.set_defaults(func=cmd_review)

    af = sub.add_parser("airflow", help="the embedded Airflow: setup (DB + pools) or start (standalone)")
    af.add_argument("action", choices=["setup", "start"])
    af.add_argument("--port", type=_port, default=8080,
                    help="the Airflow UI / API port; every component uses it (the tasks' "
                         "execution API too)")
    af.add_argument("--host", default="127.0.0.1",
                    help="the address the UI / API listens on (default: loopback only; 0.0.0.0 "
                         "opens it to the network)")
    af.set_defaults(func=cmd_airflow)

    d = sub.add_parser("demo", help="the main job on the bundled storefront: serve, scrape, "
                       "dvc repro, publish")
    _project(d, "data")
    d.add_argument("--scrape-only", action="store_true", help="stop after the scrape")
    d.add_argument("--no-publish", action="store_true", help="run the pipeline, do not tag/push")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--rate-limit", type=float, default=20.0)
    d.add_argument("store_args", nargs="*", help="more `store serve` flags, after --")
    d.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    level = logging.WARNING - 10 * min(a.verbose, 2)
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    chatty = ("store", "publish", *(s.name for s in STAGES))
    logging.getLogger("pipeline").setLevel(max(level - 10, logging.DEBUG) if a.verbose else
                                           logging.INFO if a.cmd in chatty else logging.WARNING)
    try:
        _enter_project(a)
        return int(a.func(a) or 0)
    except ConfigError as exc:
        print(f"gemcurate: configuration error: {printable(exc, keep_newlines=True)}", file=sys.stderr)
        return ExitCode.USAGE
    except NotInProject as exc:
        print(f"gemcurate: {printable(exc)}", file=sys.stderr)
        return ExitCode.USAGE
    except UserError as exc:
        print(f"gemcurate: {printable(exc, keep_newlines=True)}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print("gemcurate: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # one line for people; the traceback with -v
        if a.verbose:
            raise
        text = printable(" ".join(str(exc).split())[:500])
        print(f"gemcurate: {type(exc).__name__}: {text} (run with -v for the traceback)",
              file=sys.stderr)
        return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
