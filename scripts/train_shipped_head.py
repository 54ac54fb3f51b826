"""Retrain the junk head that ships in the package (pipeline/weights/junk_head.npz + .json).

It learns only from what may be shipped: the generated bank and, given --realdata, the
licensed halves of hands/ (Apache-2.0) and documents/ (MIT) with their composites (see
pipeline/stages/filter/head.py). Deterministic: the same bank gives the same bytes.

    .venv/bin/python scripts/train_shipped_head.py --realdata ../shared/realdata
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.stages.filter import head as heads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realdata", help="the real samples folder (only its licensed folders are used)")
    ap.add_argument("--per-label", type=int, default=240)
    a = ap.parse_args()
    head, manifest = heads.train(heads.bank(a.per_label, a.realdata))
    head.save(heads.SHIPPED, manifest)
    print(json.dumps(manifest["metrics"], indent=2))
    print(f"wrote {heads.SHIPPED}")


if __name__ == "__main__":
    main()
