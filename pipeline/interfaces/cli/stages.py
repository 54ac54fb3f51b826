"""One command per pipeline stage (``gemcurate dedupe`` …), and ``gemcurate filter train-head``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.paths import find_project_root
from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)
from pipeline.stages.registry import STAGES


def add_parser(sub: argparse._SubParsersAction) -> None:
    for stage in STAGES:
        st = sub.add_parser(stage.name, help=stage.help)
        project_options(st)
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


def cmd_stage(a: argparse.Namespace) -> int:
    from pipeline.project import require_current_lock

    params = project_params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
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
