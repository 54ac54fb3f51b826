"""The stages, in order: one registry for the CLI, ``dvc.yaml`` and the docs.

Each :class:`Stage` names its module (``pipeline/<name>.py``, which has
``run()`` and ``main()``), its one-line help, and what DVC must know: the data it
reads, the exact ``params.yaml`` keys that change its outputs (``workers`` and
``progress`` never do), and what it writes. ``dvc.yaml`` is generated from this
table plus each module's import closure (:mod:`pipeline.project`); a test keeps
the committed file equal to it.

Example:
    >>> [s.name for s in DVC_STAGES]
    ['dedupe', 'filter', 'crop', 'split', 'augment', 'validate', 'export', 'train', 'evaluate']
"""

from __future__ import annotations

from dataclasses import dataclass, field

REVIEWS_DB = "data/state/reviews.sqlite"


@dataclass(frozen=True)
class Stage:
    """One curation stage."""

    name: str
    help: str
    #: data (not code) the stage reads: manifests, folders, the decisions database
    deps: tuple[str, ...] = ()
    #: whole params sections besides its own that shape it (evaluate cuts external photos
    #: with the crop's params); single fields say so themselves (``pipeline/core/config.py``)
    reads: tuple[str, ...] = ()
    #: path → DVC output options (``persist``, ``cache`` …)
    outs: dict[str, dict] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    #: path → DVC plot options
    plots: dict[str, dict] = field(default_factory=dict)
    #: a DVC stage (``report`` is run by hand: it changes no dataset)
    dvc: bool = True
    #: package files besides its modules that shape its outputs (the shipped junk head):
    #: part of the stage's code for dvc.yaml and the code lock
    code_data: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return f"pipeline.stages.{self.name}"

    @property
    def params(self) -> tuple[str, ...]:
        """The ``section.field`` keys that change its outputs, derived from the fields'
        metadata (:func:`pipeline.core.config.stage_params`): never a list kept by hand."""
        from pipeline.core.config import stage_params

        return tuple(stage_params(self.name, self.reads))


STAGES: tuple[Stage, ...] = (
    Stage("dedupe", "exact and near-duplicate clusters, one representative each",
          deps=("data/manifests/raw.parquet", "data/store", REVIEWS_DB),
          outs={"data/manifests/dedupe.parquet": {},
                # fingerprints and verified pairs: a refresh only hashes new images
                "data/dedupe": {"persist": True, "cache": False},
                # one embedding per image (by image_id), shared with the filter and training:
                # a refresh embeds only new images
                "data/embeddings": {"persist": True, "cache": False}},
          metrics=("data/metrics/dedupe.json",)),
    Stage("filter", "certificate/hand/quality checks, review flags, annotator decisions",
          deps=("data/manifests/dedupe.parquet", REVIEWS_DB, "data/embeddings"),
          code_data=("pipeline/weights/junk_head.npz", "pipeline/weights/hands/SOURCE.json",
                     "pipeline/weights/hands/palm_detection_full.onnx",
                     "pipeline/weights/hands/hand_landmark_full.onnx"),
          outs={"data/manifests/filter.parquet": {},
                # per-image scores: a refresh scores only new images
                "data/filter": {"persist": True, "cache": False}},
          metrics=("data/metrics/filter.json",)),
    Stage("labels", "label issues: out-of-fold probe on the shared embeddings, confident learning",
          deps=("data/manifests/filter.parquet", "data/embeddings"),
          outs={"data/manifests/labels.parquet": {}},
          metrics=("data/metrics/labels.json",)),
    Stage("crop", "region-of-interest crop to square target-size images",
          deps=("data/manifests/labels.parquet",),
          outs={"data/manifests/crop.parquet": {},
                # per-image boxes and the content-addressed crops: a refresh crops only new images
                "data/crop": {"persist": True, "cache": False},
                "data/crops": {"persist": True}},
          metrics=("data/metrics/crop.json",)),
    Stage("report", "HTML curation report with contact sheets", dvc=False),
    Stage("split", "group-aware, stratified, stable train/val/test split",
          deps=("data/manifests/crop.parquet",),
          outs={"data/manifests/split.parquet": {},
                # the assignment ledger: known groups keep their split on refreshes
                "data/split": {"persist": True}},
          metrics=("data/metrics/split.json",),
          plots={"data/metrics/split_classes.csv": {"cache": False}}),
    Stage("augment", "balance train classes with rotations and mirrors",
          deps=("data/manifests/split.parquet", "data/crops"),
          outs={"data/manifests/augment.parquet": {}, "data/augment": {}},
          metrics=("data/metrics/augment.json",),
          plots={"data/plots/class_balance_long.csv": {"cache": False, "template": "bar_horizontal",
                                                       "x": "images", "y": "label"},
                 "data/plots/class_balance.png": {"cache": False}}),
    Stage("validate", "Great Expectations gates; non-zero exit on failure",
          deps=("expectations", "data/metrics/split_classes.csv", "data/manifests/augment.parquet",
                "data/crops", "data/augment"),
          outs={"data/validate": {"cache": False}},
          metrics=("data/metrics/validate.json",)),
    Stage("export", "tar shards + manifest + dataset card in data/dataset",
          deps=("data/manifests/augment.parquet", "data/validate", "data/crops", "data/augment"),
          outs={"data/dataset": {}},
          metrics=("data/metrics/export.json",)),
    Stage("train", "train a classifier on the exported dataset (Keras 3, offline weights)",
          deps=("data/dataset",),
          outs={"models/model.keras": {}, "models/labels.json": {},
                "data/train/history.csv": {"cache": False}},
          metrics=("data/metrics/train.json",),
          plots={"data/train/live/plots/metrics": {"cache": False, "x": "step"}}),
    Stage("evaluate", "top-1/3/5, per-class precision/recall/F1, confusion, embeddings, model card",
          deps=("data/dataset", "models/model.keras", "models/labels.json",
                # evaluate.external: the raw-photo baseline reads the raw photos' embeddings
                "data/manifests/raw.parquet", "data/embeddings"),
          reads=("train", "crop"),
          outs={"data/evaluate": {}, "models/MODEL_CARD.md": {"cache": False}},
          metrics=("data/metrics/evaluate.json",),
          plots={"data/plots/confusion.csv": {"cache": False, "template": "confusion",
                                              "x": "predicted", "y": "actual"},
                 "data/plots/external_confusion.csv": {"cache": False, "template": "confusion",
                                                       "x": "predicted", "y": "actual"}}),
)

BY_NAME = {s.name: s for s in STAGES}
DVC_STAGES = tuple(s for s in STAGES if s.dvc)
