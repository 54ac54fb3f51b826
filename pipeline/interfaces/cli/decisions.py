"""Annotator decisions from the command line: ``gemcurate decide`` and ``decisions list|import|export``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.text import printable
from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    de = sub.add_parser("decide", help="record an annotator decision for one image")
    de.add_argument("image_id")
    de.add_argument("decision", choices=["accept", "reject", "relabel"])
    de.add_argument("--label", help="new label (relabel only): a class of the project")
    de.add_argument("--new-class", action="store_true",
                    help="let --label name a class the project does not have yet")
    de.add_argument("--by", required=True, help="who decided")
    de.add_argument("--reason", help="the review_reason this answers")
    de.add_argument("--note")
    project_options(de)
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
        project_options(x)
        x.set_defaults(func=cmd_decide)

    dx = dsub.add_parser("export", help="write every decision (the full history) to a CSV, for audits")
    dx.add_argument("csv")
    project_options(dx)
    dx.set_defaults(func=cmd_decisions_export)


def cmd_decide(a: argparse.Namespace) -> int:
    from pipeline.core import decisions

    params = project_params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
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

    params = project_params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    db = decisions.open_db(params.data.review_db, params.data.data_dir)
    import io

    buf = io.StringIO()
    n = export_csv(db, buf)
    write_text(Path(a.csv), buf.getvalue())
    print(f"wrote {a.csv} ({n} decision(s))")
    return 0
