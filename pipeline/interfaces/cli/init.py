"""``gemcurate init``: start a curation project (git + DVC + params + site)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.config import PLATFORMS


def add_parser(sub: argparse._SubParsersAction) -> None:
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
