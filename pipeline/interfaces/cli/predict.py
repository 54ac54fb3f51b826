"""``gemcurate predict`` and ``similar``: a trained model on photos from outside."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="top-5 classes of photos (the pipeline's crop, then the model)")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--model", help="folder with model.keras and labels.json (default: models/)")
    pr.add_argument("--json", action="store_true", help="a JSON list, one object per image")
    project_options(pr)
    pr.set_defaults(func=cmd_predict)
    si = sub.add_parser("similar", help="the nearest other products to a photo (model embeddings)")
    si.add_argument("image")
    si.add_argument("--k", type=int, default=10)
    si.add_argument("--model", help="default: models/")
    si.add_argument("--embeddings", help="default: data/evaluate/embeddings.parquet")
    si.add_argument("--json", action="store_true")
    project_options(si)
    si.set_defaults(func=cmd_similar)


def cmd_predict(a: argparse.Namespace) -> int:
    from pipeline.stages.predict import predict

    params = project_params(a)
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

    params = project_params(a)
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
