"""Validate stage: Great Expectations gates between curation and publish.

Four suites, stored as JSON in ``expectations/`` and run with Great
Expectations 1.x on four tables built from the augment manifest:

* ``dataset`` — one row per dataset image: the declared columns exist with the
  types declared in :mod:`pipeline.core.manifest`; unique ``image_id``; labels from
  the class table; known splits; nothing flagged certificate or hand, nothing
  rejected; variants (``parent_id``) only in train;
* ``groups`` — one row per product and per duplicate cluster: in one split only;
* ``balance`` — one row per class × split: train within ± ``balance_tolerance``
  of ``augment.target_per_class``, every class in val/test, each split's share
  within ``split.tolerance`` of its ratio;
* ``files`` — one row per dataset image: the file exists, decodes and has the
  target size.

Values that depend on params or on the data (the label set, the target) are
``$PARAMETER`` placeholders in the suites, filled at run time. The suites are
generated from the manifest declarations by :func:`build_suites` (``gemcurate
validate --write-suites``); a test keeps the stored JSON equal to them.

A failure prints a summary naming each failed expectation with example rows,
writes ``<data_dir>/validate/result.json`` and the Data Docs HTML
(``<data_dir>/validate/gx/uncommitted/data_docs/local_site/index.html``), and
exits non-zero, which stops ``dvc repro`` before export.

Example:
    $ gemcurate validate --data-dir data
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from pipeline.core import captions, manifest
from pipeline.core.atomic import write_text
from pipeline.core.config import Params
from pipeline.core.paths import project_root
from pipeline.core.stagerun import StageResult, StageRun, stage
from pipeline.core.validation import ValidationFailed, manifest_digest, result_path, summary_path

logger = logging.getLogger(__name__)

TABLES = ("dataset", "groups", "balance", "files")
KEYS = {"dataset": ["image_id"], "groups": ["kind", "key"], "balance": ["label", "split"],
        "files": ["image_id"]}
# how GX reports the element type of each declared pandas dtype
GX_TYPE = {"string": "str", "Int64": "int64", "boolean": "bool", "float64": "float64",
           manifest.TIMESTAMP: "Timestamp"}


def _e(expectation: str, why: str, **kwargs) -> dict:
    return {"type": expectation, "kwargs": kwargs, "meta": {"why": why}}


# long: the four suites as data, one expectation per line
def build_suites() -> dict[str, dict]:
    """The four suites as GX JSON dicts (from the manifest declarations)."""
    ds = []
    for name in manifest.required_columns("augment"):
        col = manifest.column_for(name)
        assert col is not None
        ds.append(_e("expect_column_to_exist", f"declared in pipeline/core/manifest.py ({col.stage})",
                     column=name))
        if col.dtype in GX_TYPE:
            ds.append(_e("expect_column_values_to_be_of_type", f"declared dtype {col.dtype}",
                         column=name, type_=GX_TYPE[col.dtype]))
        if not col.nullable:
            ds.append(_e("expect_column_values_to_not_be_null", "declared non-nullable", column=name))
    ds += [
        _e("expect_table_row_count_to_be_between", "a dataset has images", min_value=1),
        _e("expect_column_values_to_be_unique", "one row per image", column="image_id"),
        _e("expect_column_values_to_be_in_set", "labels of the class table",
           column="label", value_set={"$PARAMETER": "labels"}),
        _e("expect_column_values_to_be_in_set", "known splits",
           column="split", value_set={"$PARAMETER": "splits"}),
        _e("expect_column_values_to_not_be_null", "every dataset image has a file", column="image_path"),
        _e("expect_column_values_to_be_in_set", "no certificate scans in the dataset",
           column="is_certificate", value_set=[False]),
        _e("expect_column_values_to_be_in_set", "no hand photos in the dataset",
           column="is_hand", value_set=[False]),
        _e("expect_column_values_to_not_be_in_set", "nothing an annotator rejected",
           column="decision", value_set=["reject"]),
        _e("expect_column_values_to_not_be_null", "every dataset image has a caption",
           column="caption_basic"),
        _e("expect_column_values_to_be_in_set", "a caption has the attributes its template "
           "needs, or is marked partial", column="caption_consistent", value_set=[True]),
        _e("expect_column_values_to_be_null", "augmented variants only in train",
           column="parent_id", row_condition={"type": "comparison", "column": {"name": "split"},
                                              "operator": "!=", "parameter": "train"}),
    ]
    groups = [
        _e("expect_column_values_to_be_between", "a product or duplicate cluster in one split only",
           column="n_splits", min_value=1, max_value=1),
    ]
    balance = [
        _e("expect_column_values_to_be_between",
           "train images per class within ± balance_tolerance of the target (or of what 16 "
           "variants per photo allow)", column="train_deviation",
           min_value={"$PARAMETER": "neg_balance_tolerance"},
           max_value={"$PARAMETER": "balance_tolerance"}),
        _e("expect_column_values_to_be_between", "every class present in val and test",
           column="heldout_images", min_value={"$PARAMETER": "min_per_class"}),
        _e("expect_column_values_to_be_between", "split shares (of photos) near the ratios",
           column="share_deviation", min_value={"$PARAMETER": "neg_tolerance"},
           max_value={"$PARAMETER": "tolerance"}),
    ]
    files = [
        _e("expect_column_values_to_be_in_set", "the file exists", column="exists", value_set=[True]),
        _e("expect_column_values_to_be_in_set", "the file decodes", column="decodes", value_set=[True]),
        _e("expect_column_values_to_be_between", "target size", column="width",
           min_value={"$PARAMETER": "size"}, max_value={"$PARAMETER": "size"}),
        _e("expect_column_values_to_be_between", "target size", column="height",
           min_value={"$PARAMETER": "size"}, max_value={"$PARAMETER": "size"}),
    ]
    out = {}
    for name, exps in (("dataset", ds), ("groups", groups), ("balance", balance), ("files", files)):
        out[name] = {"name": f"gemcurate_{name}", "expectations": exps,
                     "meta": {"generated_by": "pipeline.stages.validate.build_suites",
                              "table": name}}
    return out


def suites_dir() -> Path:
    """The project's ``expectations/`` folder (a DVC dependency of the validate stage)."""
    return project_root() / "expectations"


def write_suites(directory: Path | None = None) -> list[Path]:
    """Regenerate ``expectations/*.json`` from the declarations."""
    directory = directory or suites_dir()
    paths = []
    for name, suite in build_suites().items():
        path = directory / f"{name}.json"
        write_text(path, json.dumps(suite, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def load_suites(directory: Path | None = None) -> dict[str, dict]:
    directory = directory or suites_dir()
    missing = [t for t in TABLES if not (directory / f"{t}.json").exists()]
    if missing:
        raise ValidationFailed(f"{directory / missing[0]}.json missing; run "
                               "`gemcurate validate --write-suites`")
    out = {}
    for t in TABLES:
        try:
            suite = json.loads((directory / f"{t}.json").read_text())
            if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
                raise ValueError("not a suite (no list of expectations)")
        except (OSError, ValueError) as exc:
            raise ValidationFailed(f"{directory / t}.json is not a readable suite ({exc}); "
                                   "regenerate it with `gemcurate validate --write-suites`") from None
        out[t] = _without_uncarried(suite, directory / f"{t}.json")
    return out


def _without_uncarried(suite: dict, path: Path) -> dict:
    """The suite less its expectations on columns the dataset's manifest no longer carries
    (:func:`pipeline.core.manifest.not_carried`: the crawl's bookkeeping, kept in the raw
    manifest only since 2026-12-07). A project's suites were written when it was made: an
    older one still checks them, and would fail every dataset for a column left out on purpose."""
    gone = set(manifest.not_carried("augment"))
    kept = [e for e in suite["expectations"]
            if not (isinstance(e, dict) and (e.get("kwargs") or {}).get("column") in gone)]
    if len(kept) < len(suite["expectations"]):
        logger.warning("%s checks column(s) %s, which only the raw manifest keeps: those checks are "
                       "skipped (`gemcurate validate --write-suites` rewrites the suite)", path,
                       ", ".join(sorted(gone)))
    return {**suite, "expectations": kept}


def dataset_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["split"].notna() & df["excluded_reason"].isna()].reset_index(drop=True)


def group_table(ds: pd.DataFrame) -> pd.DataFrame:
    """Products and duplicate clusters with the number of splits their images are in."""
    parts = []
    for kind, col in (("product", "product_id"), ("cluster", "dup_cluster")):
        key = ds[col].astype("string")
        if kind == "product":
            key = ds["site"].astype(str) + "/" + key
        g = pd.DataFrame({"key": key, "split": ds["split"]}).dropna().groupby("key")["split"]
        t = g.nunique().rename("n_splits").reset_index()
        t["splits"] = g.agg(lambda s: ",".join(sorted(set(s)))).values
        t.insert(0, "kind", kind)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def balance_table(ds: pd.DataFrame, ratios: dict[str, float], target: int, per_photo: int,
                  whole: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """Class × split counts, train deviation from the target, held-out counts, share deviation.

    A class's expected train count is the target, or ``photos × per_photo`` when
    even every variant of every photo cannot reach it. A class in ``whole`` trains whole
    (too few photos to hold any out: ``split.min_heldout_images``): its held-out count is
    left empty, so "every class present in val and test" does not ask it of that class.
    """
    photos = ds[ds["parent_id"].isna()]
    rows = []
    labels = sorted(ds["label"].unique())
    n_photos = max(1, len(photos))
    for s in ratios:
        share = float((photos["split"] == s).sum()) / n_photos
        for lab in labels:
            n = int(((ds["label"] == lab) & (ds["split"] == s)).sum())
            n_photos_train = int(((photos["label"] == lab) & (photos["split"] == "train")).sum())
            expected = min(target, n_photos_train * per_photo)
            rows.append({"label": lab, "split": s, "images": n,
                         "expected_train": expected if s == "train" else None,
                         "train_deviation": round(n / max(1, expected) - 1, 4) if s == "train" else None,
                         "heldout_images": n if s != "train" and lab not in whole else None,
                         "share_deviation": round(share - ratios[s], 4) if lab == labels[0] else None})
    t = pd.DataFrame(rows)
    for c in ("expected_train", "heldout_images"):
        t[c] = t[c].astype("Int64")
    for c in ("train_deviation", "share_deviation"):
        t[c] = t[c].astype("Float64")
    return t


def file_table(ds: pd.DataFrame, data_dir: Path, check: bool) -> pd.DataFrame:
    """Open every dataset image: exists, decodes, size (cheap header reads)."""
    from PIL import Image

    rows = []
    for i, rel in zip(ds["image_id"], ds["image_path"], strict=True):
        path = data_dir / str(rel)
        r = {"image_id": i, "path": str(rel), "exists": path.exists(), "decodes": False,
             "width": None, "height": None}
        if r["exists"] and check:
            try:
                with Image.open(path) as im:
                    im.verify()
                with Image.open(path) as im:
                    r["width"], r["height"] = im.size
                r["decodes"] = True
            except Exception:  # any failure means "does not decode"
                pass
        elif r["exists"]:
            r["decodes"] = True
        rows.append(r)
    t = pd.DataFrame(rows, columns=["image_id", "path", "exists", "decodes", "width", "height"])
    return t.astype({"width": "Int64", "height": "Int64"})


def _summarize(name: str, res, table: pd.DataFrame, examples: int) -> list[dict]:
    out = []
    for r in res.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kw = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
        res_d = r.result or {}
        idx = res_d.get("unexpected_index_list") or []
        out.append({
            "table": name, "expectation": cfg.type, "kwargs": kw,
            "why": (cfg.meta or {}).get("why", ""),
            "unexpected_count": res_d.get("unexpected_count"),
            "element_count": res_d.get("element_count"),
            "observed_value": res_d.get("observed_value"),
            "examples": [{k: _plain(v) for k, v in row.items()} for row in idx[:examples]]
            if idx and isinstance(idx[0], dict) else (res_d.get("partial_unexpected_list") or [])[:examples],
            "exception": (r.exception_info or {}).get("exception_message")
            if getattr(r, "exception_info", None) and r.exception_info.get("raised_exception") else None,
        })
    return out


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def format_failures(failures: list[dict]) -> str:
    lines = [f"validation FAILED: {len(failures)} expectation(s)"]
    for f in failures:
        col = f["kwargs"].get("column", "")
        what = f"{f['expectation']}({col})" if col else f["expectation"]
        cnt = (f"{f['unexpected_count']} of {f['element_count']} rows"
               if f["unexpected_count"] is not None else f"observed {f['observed_value']}")
        lines.append(f"  ✗ [{f['table']}] {what} — {f['why']}: {cnt}")
        if f.get("exception"):
            lines.append(f"      error: {f['exception']}")
        for ex in f["examples"]:
            lines.append(f"      e.g. {ex}")
    return "\n".join(lines)


# long: the gate's steps in order (tables, one GX batch per table, failures summarised, Data Docs)
def run(df: pd.DataFrame, params: Params, *, data_dir: str | Path, labels: list[str],
        docs_dir: Path | None = None, suites: dict[str, dict] | None = None
        ) -> tuple[pd.DataFrame, dict]:
    """Run the suites on the augment manifest (does not raise on a failure).

    Args:
        df: The augment manifest.
        params: All params.
        data_dir: Where ``image_path`` is relative to.
        labels: The allowed label set (``validate.labels``, else the split stage's
            class table).
        docs_dir: GX project folder for Data Docs; ``None``: ephemeral, no docs.
        suites: Suites as dicts (default: the project's ``expectations/*.json``).

    Returns:
        One row per failed expectation (empty when everything passed) and the
        result dict (``success``, ``failures``, per-table stats, Data Docs URL).

    Example:
        >>> failed, result = run(augment_manifest, params, data_dir="data", labels=["ruby"])
        >>> result["success"], len(failed)
        (True, 0)
    """
    data_dir = Path(data_dir)
    import great_expectations as gx

    t0 = time.perf_counter()
    suites = suites or load_suites()
    ds = dataset_rows(df)
    ds = pd.concat([ds, captions.describe(ds, params.export.captions)], axis=1)
    labels = sorted(labels)
    ratios = params.split.ratios()
    target = params.augment.target_per_class
    tol = params.validate.balance_tolerance
    tables = {
        "dataset": ds,
        "groups": group_table(ds),
        "balance": balance_table(ds, ratios, target, _variants_per_photo(params), set(
            params.split.train_only(ds.loc[ds["parent_id"].isna(), "label"].astype(str).value_counts()))),
        "files": file_table(ds, data_dir, params.validate.check_files),
    }
    expectation_params = {
        "labels": labels, "splits": list(ratios), "size": params.crop.target_size,
        "balance_tolerance": tol, "neg_balance_tolerance": -tol,
        "min_per_class": params.validate.min_per_class,
        "tolerance": params.split.tolerance, "neg_tolerance": -params.split.tolerance,
    }
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        _drop_derived_definitions(docs_dir)
        ctx = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    else:
        ctx = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # one summary line instead
    source = ctx.data_sources.add_or_update_pandas("gemcurate")
    failures: list[dict] = []
    stats = {}
    for name in TABLES:
        suite_d = suites[name]
        suite = _put(ctx.suites, gx.ExpectationSuite(
            name=suite_d["name"], expectations=[_expectation(e) for e in suite_d["expectations"]],
            meta=suite_d.get("meta", {})))
        asset = source.add_dataframe_asset(name=name)
        bd = asset.add_batch_definition_whole_dataframe(f"{name}_all")
        vd = _put(ctx.validation_definitions,
                  gx.ValidationDefinition(name=f"gemcurate_{name}", data=bd, suite=suite))
        cp = _put(ctx.checkpoints, gx.Checkpoint(
            name=f"gemcurate_{name}", validation_definitions=[vd], actions=[],
            result_format={"result_format": "COMPLETE",
                           "unexpected_index_column_names": KEYS[name]}))
        table = tables[name]
        res = cp.run(batch_parameters={"dataframe": table}, expectation_parameters=expectation_params)
        vres = next(iter(res.run_results.values()))
        stats[name] = {"rows": len(table), "expectations": len(vres.results),
                       "failed": sum(not r.success for r in vres.results)}
        failures += _summarize(name, vres, table, params.validate.examples)
    docs = None
    if docs_dir is not None:
        ctx.build_data_docs()  # once for the four tables (an UpdateDataDocsAction each: 4 builds)
        urls = ctx.get_docs_sites_urls()
        docs = urls[0]["site_url"] if urls else None
    result = {"success": not failures, "failures": failures, "tables": stats,
              "parameters": expectation_params, "data_docs": docs,
              "dataset_images": len(ds), "manifest_rows": len(df),
              "seconds": round(time.perf_counter() - t0, 2)}
    cols = ["table", "expectation", "kwargs", "why", "unexpected_count", "element_count"]
    return pd.DataFrame([{c: f.get(c) for c in cols} for f in failures], columns=cols), result


def _put(factory, item):
    """``factory.add(item)``; ``add_or_update`` only when an earlier run's copy is still stored.

    The suites, validation definitions and checkpoints are new on every run (ephemeral, or
    dropped by :func:`_drop_derived_definitions`), and GX's ``add_or_update`` costs: a
    validation definition's saves its suite again and a checkpoint's saves its validation
    definitions again, and updating a stored suite compares every expectation with every
    other (2 of validate's 9 seconds on 400 photos, 2026-12-07).
    """
    from great_expectations.exceptions import DataContextError

    try:
        return factory.add(item)
    except DataContextError:  # a copy the drop could not remove (a read-only file, say)
        return factory.add_or_update(item)


#: validation results kept per table for the Data Docs: each build renders every stored
#: result, so an unbounded history makes every run slower than the last
KEEP_RESULTS = 10


def _drop_derived_definitions(docs_dir: Path) -> None:
    """Remove what GX stored on earlier runs that this run makes again or renders anew.

    The suites, validation definitions and checkpoints are made again from
    ``expectations/*.json`` on every run; left in place, GX's ``add_or_update`` compares every
    stored expectation with every new one (4 s of the stage's 8 on the demo, 2026-12-07).
    Results beyond the newest :data:`KEEP_RESULTS` per table go, and the rendered result
    pages with them (the build writes the kept ones again).
    """
    import shutil

    gx_dir = docs_dir / "gx"
    for name in ("expectations", "validation_definitions", "checkpoints",
                 "uncommitted/data_docs/local_site/validations"):
        shutil.rmtree(gx_dir / name, ignore_errors=True)
    def folders(d: Path) -> list[Path]:  # a link is never followed: it may lead off the tree
        return [x for x in d.iterdir() if x.is_dir() and not x.is_symlink()] \
            if d.is_dir() and not d.is_symlink() else []

    for suite in folders(gx_dir / "uncommitted" / "validations"):
        runs = sorted((r for name in folders(suite) for r in folders(name)),
                      key=lambda r: r.name)  # run times: sortable UTC stamps
        for old in runs[:-KEEP_RESULTS]:
            shutil.rmtree(old, ignore_errors=True)


def allowed_labels(params: Params, data_dir: Path) -> list[str]:
    """``validate.labels`` when set, else the classes of the split stage's class table."""
    if params.validate.labels:
        return list(params.validate.labels)
    table = data_dir / "metrics" / "split_classes.csv"
    if not table.exists():
        raise FileNotFoundError(f"{table} missing: run `gemcurate split` first")
    return pd.read_csv(table)["label"].astype(str).tolist()


def _variants_per_photo(params: Params) -> int:
    return params.augment.images_per_photo()


def _expectation(d: dict):
    import great_expectations.expectations as gxe

    cls_name = "".join(w.capitalize() for w in d["type"].split("_"))
    cls = getattr(gxe, cls_name)
    return cls(**d["kwargs"], meta=d.get("meta"))


@stage("validate", reads="augment")
def main(ctx: StageRun, df: pd.DataFrame) -> StageResult:
    """Validate ``augment.parquet``; write ``validate/result.json``; raise on failure."""
    io = ctx.io
    out_dir = io.data_dir / "validate"
    _, result = run(df, ctx.params, data_dir=io.data_dir, labels=allowed_labels(ctx.params, io.data_dir),
                    docs_dir=out_dir / "gx")
    result["manifest_sha256"] = manifest_digest(io.data_dir)
    write_text(result_path(io.data_dir), json.dumps(result, indent=2, default=str) + "\n")
    metrics = {"success": result["success"], "failed_expectations": len(result["failures"]),
               "dataset_images": result["dataset_images"], "seconds": result["seconds"]}
    if not result["success"]:
        io.write_metrics("validate", metrics)  # the failure is a result too: dvc metrics shows it
        summary = format_failures(result["failures"])
        summary += f"\n  Data Docs: {result['data_docs']}"
        write_text(summary_path(io.data_dir), summary + "\n")
        raise ValidationFailed(summary)
    write_text(summary_path(io.data_dir), "validation passed\n")
    return StageResult(metrics, summary=f"validate: passed ({result['dataset_images']} dataset images); "
                                        f"Data Docs: {result['data_docs']}")

