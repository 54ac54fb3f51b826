"""Typed, validated configuration: ``params.yaml`` sections and site adapters.

Every section of ``params.yaml`` becomes a frozen dataclass. Loading rejects
unknown keys (with a "did you mean" hint), wrong types and out-of-range values,
always naming the offending key, so a typo in a weekly DAG's params fails at
parse time instead of silently falling back to a default.

Constraints live next to the field they constrain::

    rate: float = field(default=2.0, metadata={"min": 0.01, "doc": "requests/s"})

Example:
    >>> params = load_params("params.yaml")
    >>> params.scrape.concurrency
    4
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or section is malformed; the message names the key."""


# long: one branch per annotation a params field may have (bool, int, float, str, lists, optionals,
# nested sections), each a few lines; one place decides what a YAML value may be
def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Validate ``value`` against type ``tp``, coercing ints to floats where a float is due."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError as exc:
                errors.append((arg, str(exc)))
        # the error of the alternative shaped like the value says what is wrong with it
        shaped = [e for a, e in errors
                  if (isinstance(value, dict)
                      and (dataclasses.is_dataclass(a) or typing.get_origin(a) is dict))
                  or (isinstance(value, list) and typing.get_origin(a) in (list, tuple))]
        if len(shaped) == 1:
            raise ConfigError(shaped[0])
        raise ConfigError(errors[0][1] if len(errors) == 1 else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, prefix=key)
    if origin is list or origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        items = [_check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return {
            _check_type(k, kt, f"{key}.<key>"): _check_type(v, vt, f"{key}.{k}")
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            # NaN passes every comparison: max_rate .nan once disabled the rate limiter
            raise ConfigError(f"{key}: {value!r} is not a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{key}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is above the maximum {hi}")
    choices = meta.get("choices")
    if choices is not None:
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if item not in choices:
                raise ConfigError(f"{key}: {item!r} is not one of {sorted(choices)}")
    pattern = meta.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, str(value)):
        raise ConfigError(f"{key}: {value!r} does not match {pattern}")


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and bad values.

    Args:
        cls: A dataclass type whose fields carry optional ``min``/``max``/``choices``
            metadata.
        data: The mapping read from YAML (``None`` means all defaults).
        prefix: Dotted path of this section, used in error messages.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: Naming the offending key.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"{dotted}: unknown key{hint}; allowed keys: {allowed}")
        checked = _check_type(value, hints[key], dotted)
        _check_range(checked, fields[key].metadata, dotted)
        kwargs[key] = checked
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix or cls.__name__}: missing required key(s): {', '.join(missing)}")
    obj = cls(**kwargs)
    # the cross-field checks of a section: ``check`` (not ``validate``, the name of a section)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except ConfigError as exc:
            raise ConfigError(f"{prefix}.{exc}" if prefix else str(exc)) from None
    return obj


class _UniqueKeys(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the
    last silently: a second ``scrape:`` section once set the crawl's ``max_rate``)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}: first on line {first.line + 1}, again on "
                        f"line {key_node.start_mark.line + 1}", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, name: str = "<yaml>") -> Any:
    """Parse YAML text like ``yaml.safe_load``, but a duplicate key is an error.

    Raises:
        ConfigError: Naming ``name``, the key and both lines (or the syntax error).
    """
    try:
        return yaml.load(text, Loader=_UniqueKeys)
    except yaml.constructor.ConstructorError as exc:
        if exc.problem and exc.problem.startswith("duplicate key"):
            raise ConfigError(f"{name}: {exc.problem}") from None
        raise ConfigError(f"{name}: not valid YAML: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning syntax errors and duplicate keys into a :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a YAML file") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- params.yaml
#
# Which params change which stage's outputs is said once, on the field: by default a field
# shapes the stage of its own section (``crop.margin`` the crop stage); ``stages`` names
# every stage it shapes when that differs (``crop.margin`` also shapes augment); a field
# marked RUNTIME (``workers``, ``progress``) shapes none. The DVC params of each stage
# (``pipeline/stages/registry.py`` → ``dvc.yaml``) and each per-image cache's key
# (``core/resultcache.py``) are derived from this, so a new field reruns its stage unless
# it says it is runtime only.

#: a field that changes how a stage runs, never what it writes
RUNTIME = {"outputs": False}

#: the store platforms gemcurate has a site template for (``init --platform``) and the demo
#: storefront can imitate (``store serve --layout``): one list, read by both
PLATFORMS = ("demo", "shopify", "woocommerce", "magento")


def shaped_stages(section: str, f: Any) -> tuple[str, ...]:
    """The stages whose outputs the field ``f`` of params section ``section`` changes."""
    if f.metadata.get("outputs", True) is False:
        return ()
    return tuple(f.metadata.get("stages", (section,)))


def stage_params(stage: str, reads: tuple[str, ...] = ()) -> list[str]:
    """The ``section.field`` keys that shape ``stage``'s outputs (``reads``: whole other
    sections it reads, such as the crop a photo from outside is cut with)."""
    import dataclasses

    keys = []
    for sf in dataclasses.fields(Params):
        section = getattr(Params(), sf.name)
        for f in dataclasses.fields(section):
            shaped = shaped_stages(sf.name, f)
            if stage in shaped or (sf.name in reads and shaped):
                keys.append(f"{sf.name}.{f.name}")
    return keys


@dataclass(frozen=True)
class DataParams:
    """Where things live. Relative paths are relative to the working directory."""

    data_dir: str = "data"
    store_root: str | None = field(default=None, metadata={"doc": "default: <data_dir>/store"})
    state_db: str | None = field(
        default=None, metadata={"doc": "SQLAlchemy URL; default sqlite:///<data_dir>/state/crawl.sqlite"}
    )
    review_db: str | None = field(
        default=None,
        metadata={"doc": "annotator decisions, SQLAlchemy URL; default sqlite:///<data_dir>/state/reviews.sqlite"},
    )

    def check(self) -> None:
        if self.store_root and "://" in self.store_root:
            from pipeline.core.blobstore import parse_store_url

            try:
                parse_store_url(self.store_root)
            except ValueError as exc:
                raise ConfigError(f"store_root: {exc}") from None


@dataclass(frozen=True)
class ScrapeParams:
    """Politeness, retry and validation settings of ``gemcurate scrape``."""

    site: str = "sites/demo.yaml"
    base_url: str | None = None
    user_agent: str = field(default="gemcurate/0.1 (dataset curation; contact: data-team)", metadata={
        "pattern": r"[\x20-\x7e]{1,200}", "doc": "printable ASCII: it is an HTTP header"})
    respect_robots: bool = True
    max_rate: float = field(default=20.0, metadata={"min": 0.01, "max": 1000})
    default_rate: float = field(default=1.0, metadata={"min": 0.01, "max": 1000})
    rate_safety: float = field(default=0.95, metadata={"min": 0.1, "max": 1.0})
    jitter: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})
    burst: int = field(default=1, metadata={"min": 1, "max": 100})
    concurrency: int = field(default=4, metadata={"min": 1, "max": 64})
    timeout_s: float = field(default=20.0, metadata={"min": 0.1, "max": 600})
    max_retries: int = field(default=5, metadata={"min": 0, "max": 50})
    give_up_after: int = field(default=3, metadata={
        "min": 1, "max": 1000, "doc": "a URL that failed this many scrape passes in a row (each after "
                                      "max_retries) is dead: the crawl completes without it, keeps "
                                      "what it listed before, and retries it at the next full pass"})
    backoff_base_s: float = field(default=0.5, metadata={"min": 0.0, "max": 600})
    backoff_max_s: float = field(default=60.0, metadata={"min": 0.0, "max": 3600})
    max_retry_after_s: float = field(default=300.0, metadata={"min": 0.0})
    max_bytes: int = field(default=50_000_000, metadata={"min": 1024})
    max_pixels: int = field(default=64_000_000, metadata={"min": 1024})
    min_side: int = field(default=32, metadata={"min": 1})
    max_side: int = field(default=16_384, metadata={"min": 1})
    formats: tuple[str, ...] = field(
        default_factory=lambda: ("JPEG", "PNG", "WEBP"),
        metadata={"choices": {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}},
    )
    categories: tuple[str, ...] = field(default_factory=tuple)
    max_products: int | None = field(default=None, metadata={"min": 1})
    full_refresh_every: int = field(default=8, metadata={
        "min": 0, "doc": "every Nth crawl re-checks every page and image; the others skip products "
                         "whose sitemap lastmod is unchanged or whose page answers 304 (1: every "
                         "crawl is a full pass; 0: only the first)"})
    progress: bool = field(default=True, metadata=RUNTIME)

    def check(self) -> None:
        if self.min_side > self.max_side:
            raise ConfigError(f"min_side: {self.min_side} exceeds max_side {self.max_side}")
        if self.backoff_base_s > self.backoff_max_s:
            raise ConfigError("backoff_base_s: larger than backoff_max_s")


@dataclass(frozen=True)
class DedupeParams:
    """Exact and near-duplicate detection (pipeline/stages/dedupe.py)."""

    phash_radius: int = field(default=10, metadata={"min": 0, "max": 20,
                                                    "doc": "candidate pairs: pHash within this many bits"})
    dhash_radius: int = field(default=10, metadata={"min": 0, "max": 20,
                                                    "doc": "... or dHash within this many bits"})
    min_similarity: float = field(default=0.90, metadata={
        "min": 0.0, "max": 1.0, "doc": "aligned detail correlation that confirms a candidate"})
    certain_distance: int = field(default=0, metadata={
        "min": -1, "max": 8, "doc": "both hashes within this: duplicate without verification (-1: never)"})
    max_colour_distance: float = field(default=8.0, metadata={
        "min": 0.0, "max": 255.0, "doc": "mean chroma difference (Lab) a duplicate may have"})
    embedding: bool = field(default=True, metadata={
        "doc": "embed every image once (EfficientNet-Lite0, data/embeddings, shared with the filter "
               "and training) and take close embeddings as candidates too"})
    embedding_cosine: float = field(default=0.93, metadata={
        "min": 0.5, "max": 1.0, "doc": "candidate pairs: embeddings at least this close (cosine)"})
    workers: int = field(default=0, metadata={"min": 0, "max": 256, "doc": "processes; 0: CPU count",
                                              **RUNTIME})
    search_threads: int = field(default=0, metadata={"min": 0, "max": 256, "doc": "0: CPU count (max 4)",
                                                     **RUNTIME})
    progress: bool = field(default=True, metadata=RUNTIME)


@dataclass(frozen=True)
class CheckParams:
    """Thresholds of one filter check (scores are 0 = fine … 1 = junk).

    A key left out takes the check's own default (its class in ``pipeline/stages/filter/checks/``).
    """

    enabled: bool | None = None
    threshold: float | None = field(default=None, metadata={
        "min": 0.0, "max": 1.0, "doc": "score >= threshold: is_<check> and excluded"})
    review_band: float | None = field(default=None, metadata={
        "min": 0.0, "max": 0.5, "doc": "scores within this of the threshold also get needs_review"})


@dataclass(frozen=True)
class FilterParams:
    """Junk and quality checks (pipeline/stages/filter/: the stage, its check registry, its head)."""

    analysis_side: int = field(default=400, metadata={"min": 128, "max": 4096,
                                                      "doc": "decode at most this long side"})
    ocr_second_opinion: bool = field(default=True, metadata={
        "doc": "run rapidocr's text detector on images in the certificate review band"})
    ocr_min_boxes: int = field(default=10, metadata={"min": 1, "max": 1000})
    use_url_hints: bool = True
    hand_policy: str = field(default="junk", metadata={
        "choices": {"junk", "keep"},
        "doc": "junk: a hand photo is out (loose-gem stores); keep: it stays, tagged is_worn "
               "(jewelry stores, where a ring on a finger is often the product photo)"})
    embedding: bool = field(default=True, metadata={
        "doc": "embed every image once (EfficientNet-Lite0, kept in data/embeddings) and let the "
               "learned junk head vote in the certificate and hand checks"})
    hand_pose: bool = field(default=True, metadata={
        "doc": "run MediaPipe's palm detector and hand-landmark model (shipped, ONNX Runtime) on "
               "every image and let their hand-presence score vote in the hand check"})
    head: str | None = field(default=None, metadata={
        "doc": "this project's junk head (gemcurate filter train-head writes "
               "heads/junk_head-<sha>.npz); default: the head shipped with gemcurate"})
    workers: int = field(default=0, metadata={"min": 0, "max": 256, **RUNTIME})
    progress: bool = field(default=True, metadata=RUNTIME)
    checks: dict[str, CheckParams] = field(default_factory=dict, metadata={
        "doc": "per registered check: enabled, threshold, review_band (defaults: the check's own)"})

    def check(self) -> None:
        for name in self.checks:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ConfigError(f"checks.{name}: a check name is snake_case")
        if self.head is not None and (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*\.npz", self.head)
                                      or ".." in self.head.split("/")):
            raise ConfigError(f"head: {self.head!r} is not a relative path to a .npz head file")

    def check_names(self, registry: typing.Mapping[str, type]) -> None:
        """Refuse a ``checks.<name>`` that is not registered (the filter stage calls this).

        The registry is passed in rather than imported: a check's code then changes the
        filter stage alone, not every stage that reads ``params.yaml``.
        """
        for name in self.checks:
            if name not in registry:
                close = difflib.get_close_matches(name, list(registry), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"filter.checks.{name}: no such check{hint}; registered checks: "
                                  f"{', '.join(registry)}")

    def enabled_checks(self, registry: typing.Mapping[str, type]) -> dict[str, CheckParams]:
        """Every enabled check of ``registry`` with its resolved thresholds, in registry order.

        The order is the precedence of ``excluded_reason`` when several checks flag an
        image: junk checks (certificate, hand) first, then photo quality.
        """
        self.check_names(registry)
        out = {}
        for name, cls in registry.items():
            given = self.checks.get(name) or CheckParams()
            resolved = CheckParams(
                enabled=cls.enabled if given.enabled is None else given.enabled,
                threshold=cls.threshold if given.threshold is None else given.threshold,
                review_band=cls.review_band if given.review_band is None else given.review_band)
            if resolved.enabled:
                out[name] = resolved
        return out


@dataclass(frozen=True)
class LabelsParams:
    """Label issues: store labels the shared embedding doubts (pipeline/stages/labels.py)."""

    enabled: bool = field(default=True, metadata={
        "doc": "score every label out of fold and flag the doubtful ones for review"})
    folds: int = field(default=5, metadata={
        "min": 2, "max": 20, "doc": "out-of-fold probes; folds are products joined by duplicate clusters"})
    # measured on real photos with 5 % of the labels moved (bench/label_noise.py): a stronger
    # penalty and ranking by self-confidence found the most moved labels per false flag
    l2: float = field(default=3e-2, metadata={"min": 0.0, "max": 10.0, "doc": "the probe's L2 penalty"})
    # measured the same way: 0.5 took gems from precision 0.33–0.39 to 0.83–1.00 (three seeds)
    # and kept jewelry's recall and precision above the targets (docs/benchmarks.md "Label issues")
    colour_weight: float = field(default=0.5, metadata={
        "min": 0.0, "max": 10.0,
        "doc": "weight of the foreground's colour histogram beside the shared embedding in the "
               "probe (pipeline/core/colour.py); 0: the embedding alone"})
    filter_by: str = field(default="low_self_confidence", metadata={
        "choices": ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                    "predicted_neq_given", "low_normalized_margin", "low_self_confidence"],
        "doc": "cleanlab's find_label_issues rule"})
    max_quality: float = field(default=1.0, metadata={
        "min": 0.0, "max": 1.0,
        "doc": "flag only labels the probe gives at most this probability (1.0: every label "
               "cleanlab finds); 0.05 trades recall for precision on fine-grained catalogs"})
    min_class_images: int = field(default=5, metadata={
        "min": 2, "max": 100_000, "doc": "classes with fewer images are not judged (too few to learn)"})
    hold_out: bool = field(default=False, metadata={
        "stages": ("labels", "split"),
        "doc": "true: a flagged image leaves the dataset until an annotator decides; false: "
               "flagged for review only, it trains under the store's label meanwhile"})
    seed: int = field(default=0, metadata={"min": 0})
    progress: bool = field(default=True, metadata=RUNTIME)


@dataclass(frozen=True)
class CropParams:
    """Region-of-interest crop (pipeline/stages/crop.py)."""

    target_size: int = field(default=224, metadata={"min": 16, "max": 4096,
                                                    "stages": ("crop", "augment", "validate")})
    margin: float = field(default=0.08, metadata={"min": 0.0, "max": 1.0, "stages": ("crop", "augment"),
                                                  "doc": "added around the box, share of its longer side"})
    analysis_side: int = field(default=384, metadata={"min": 64, "max": 4096})
    blur_sigma: float = field(default=0.8, metadata={"min": 0.0, "max": 20.0})
    canny_low: int = field(default=30, metadata={"min": 0, "max": 1000})
    canny_high: int = field(default=90, metadata={"min": 1, "max": 1000})
    background_tolerance: float = field(default=14.0, metadata={
        "min": 1.0, "max": 128.0, "doc": "colour distance from the background model that counts as object"})
    min_confidence: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0,
                                                         "doc": "below: needs_review"})
    min_object_area: float = field(default=0.003, metadata={"min": 0.0, "max": 1.0})
    cut_by_border: str = field(default="review", metadata={"choices": ["review", "keep"], "doc": (
        "an object the frame cuts (its edge crosses the object along 20 % of the box; one "
        "that only grazes the frame is fine): an annotator looks (gem photos: the stone may be "
        "cut off), or keep the crop (jewelry: a necklace often fills the frame)")})
    format: str = field(default="png", metadata={"choices": ["png", "jpg", "webp"]})
    mode: str = field(default="box", metadata={"choices": ["box", "full"], "doc": (
        "box: a square around the object found (loose gems: the stone fills the input); "
        "full: the whole photo on a padded square, the box only recorded (jewelry, where the "
        "scale and what surrounds the piece tell a necklace from a bracelet)")})
    workers: int = field(default=0, metadata={"min": 0, "max": 256, **RUNTIME})
    progress: bool = field(default=True, metadata=RUNTIME)

    def check(self) -> None:
        if self.canny_low >= self.canny_high:
            raise ConfigError("canny_low: must be below canny_high")


@dataclass(frozen=True)
class SplitParams:
    """Group-aware, stratified, sticky train/val/test split (pipeline/stages/split.py)."""

    train: float = field(default=0.70, metadata={"min": 0.0, "max": 1.0, "stages": ("split", "validate")})
    val: float = field(default=0.15, metadata={"min": 0.0, "max": 1.0, "stages": ("split", "validate")})
    test: float = field(default=0.15, metadata={"min": 0.0, "max": 1.0, "stages": ("split", "validate"),
                                                "doc": "0 for a two-way split (e.g. 80/20)"})
    seed: int = field(default=42, metadata={"min": 0})
    min_images: int = field(default=5, metadata={
        "min": 1, "max": 1_000_000, "doc": "classes with fewer usable images are left out"})
    min_heldout_images: int = field(default=10, metadata={
        "min": 1, "max": 1_000_000, "stages": ("split", "validate"),
        "doc": "classes with fewer usable images go to train whole: too few to hold any out, "
               "still learnt (a class left out is a class the model can never answer)"})
    hold_needs_review: bool = field(default=True, metadata={
        "doc": "images awaiting an annotator stay out of the dataset until decided"})
    tolerance: float = field(default=0.05, metadata={
        "min": 0.0, "max": 1.0, "stages": ("validate",),
        "doc": "allowed deviation of a split's overall share from its ratio"})
    label_level: str = field(default="class", metadata={
        "choices": {"class", "parent"},
        "doc": "parent: train on the label_map parents (swiss-blue-topaz → topaz); the class is "
               "kept as attr_class_label"})

    def ratios(self) -> dict[str, float]:
        return {k: v for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v > 0}

    def train_only(self, images_per_class) -> list[str]:
        """The classes (a label → count mapping or Series) with too few usable images to hold
        any out (``min_heldout_images``): they go to train whole, learnt but never scored by
        the internal val/test. The split decides with it; validate expects it."""
        return sorted(str(k) for k, n in dict(images_per_class).items() if n < self.min_heldout_images)

    def check(self) -> None:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"split: train + val + test must be 1, got {total:g}")
        if self.train <= 0:
            raise ConfigError("split.train: must be above 0")


@dataclass(frozen=True)
class ExtraTransforms:
    """Optional random transforms on top of rotations/mirrors (0 = off)."""

    shift: float = field(default=0.0, metadata={"min": 0.0, "max": 0.5, "doc": "± share of the side"})
    zoom: float = field(default=0.0, metadata={"min": 0.0, "max": 0.5, "doc": "± relative scale"})
    shear: float = field(default=0.0, metadata={"min": 0.0, "max": 45.0, "doc": "± degrees"})
    brightness: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0, "doc": "± relative"})
    channel_shift: float = field(default=0.0, metadata={"min": 0.0, "max": 128.0,
                                                        "doc": "± added per channel (changes colour!)"})

    def enabled(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in dataclasses.fields(self))


@dataclass(frozen=True)
class AugmentParams:
    """Balancing augmentation of the train split (pipeline/stages/augment.py)."""

    # what a class can reach (target, variants per photo) is what validate checks balance by
    target_per_class: int = field(default=300, metadata={
        "min": 1, "max": 10_000_000, "doc": "train images per class after balancing (D1k: 1000)",
        "stages": ("augment", "validate")})
    rotation_step: int = field(default=45, metadata={"choices": [45, 90, 180, 360],
                                                     "doc": "degrees; 360 = no rotation",
                                                     "stages": ("augment", "validate")})
    mirror: bool = field(default=True, metadata={"stages": ("augment", "validate")})
    cap_above_target: bool = field(default=True, metadata={
        "doc": "sample classes above the target down to it"})
    max_variants_per_photo: int | None = field(default=None, metadata={
        "min": 0, "max": 1000, "stages": ("augment", "validate"),
        "doc": "at most this many synthetic variants of one photo (None: as many as the target "
               "needs): caps the synthetic share of a small class (2: at most two in three train "
               "images made)"})
    extra: ExtraTransforms = field(default_factory=ExtraTransforms)
    seed: int = field(default=7, metadata={"min": 0})
    format: str = field(default="png", metadata={"choices": ["png", "jpg"]})
    workers: int = field(default=0, metadata={"min": 0, "max": 256, **RUNTIME})
    progress: bool = field(default=True, metadata=RUNTIME)

    def variant_plan(self) -> list[dict]:
        """The deterministic variants of a photo, identity first: rotations × mirror.

        Augment makes them; validate needs how many there are (what a class can reach).
        """
        angles = list(range(0, 360, self.rotation_step)) if self.rotation_step < 360 else [0]
        mirrors = [False, True] if self.mirror else [False]
        return [{"rotate": a, "mirror": m} for m in mirrors for a in angles]

    def images_per_photo(self) -> int:
        """What one photo can become in the train split: itself and its allowed variants."""
        n = len(self.variant_plan())
        return n if self.max_variants_per_photo is None else min(n, 1 + self.max_variants_per_photo)


@dataclass(frozen=True)
class ValidateParams:
    """Great Expectations gates (pipeline/stages/validate.py, expectations/*.json)."""

    balance_tolerance: float = field(default=0.02, metadata={
        "min": 0.0, "max": 1.0, "doc": "train count per class within ± this share of the target"})
    min_per_class: int = field(default=1, metadata={"min": 0, "doc": "images per class in val and test"})
    check_files: bool = field(default=True, metadata={"doc": "open every dataset image"})
    examples: int = field(default=5, metadata={"min": 1, "max": 1000,
                                               "doc": "offending rows shown per failed expectation"})
    labels: tuple[str, ...] = field(default_factory=tuple, metadata={
        "doc": "the allowed classes; empty: the classes the split stage kept"})


@dataclass(frozen=True)
class ExportParams:
    """Shards, manifest and dataset card (pipeline/stages/export.py)."""

    shard_mb: float = field(default=100.0, metadata={"min": 0.01, "max": 100_000.0})
    captions: str = field(default="gems", metadata={
        "choices": ["gems", "jewelry"], "stages": ("validate", "export"),
        "doc": "the caption template (pipeline/core/captions.py): a gem or a jewelry store"})
    name: str = field(default="gemcurate-gems", metadata={"pattern": r"[^\x00-\x1f\x7f]{1,100}"})
    description: str = field(default="Gemstone product photos curated by gemcurate",
                             metadata={"pattern": r"[^\x00-\x08\x0b-\x1f\x7f]{0,2000}"})


@dataclass(frozen=True)
class TrainParams:
    """Training a classifier on the exported dataset (pipeline/stages/train.py)."""

    model: str = field(default="efficientnet_lite0", metadata={"choices": [
        "efficientnet_lite0", "gemnet", "mobilenet_v2", "resnet50", "vgg16", "efficientnet_b2"]})
    weights_file: str | None = field(default=None, metadata={
        "doc": "local pretrained weights (never downloaded); efficientnet_lite0 has its own"})
    image_size: int = field(default=224, metadata={"min": 32, "max": 1024})
    batch_size: int = field(default=32, metadata={"min": 1, "max": 4096})
    head_epochs: int = field(default=15, metadata={"min": 0, "max": 1000,
                                                   "doc": "backbone frozen (gemnet: the whole net)"})
    head_lr: float = field(default=1e-3, metadata={"min": 1e-7, "max": 1.0})
    finetune_epochs: int = field(default=0, metadata={"min": 0, "max": 1000})
    finetune_lr: float = field(default=1e-5, metadata={"min": 1e-8, "max": 1.0})
    unfreeze: str = field(default="all", metadata={"choices": ["all", "top"],
                                                   "doc": "fine-tune everything or the top third"})
    patience: int = field(default=3, metadata={"min": 1, "max": 1000,
                                               "doc": "early stopping on validation loss"})
    dropout: float = field(default=0.2, metadata={"min": 0.0, "max": 0.9})
    l2: float = field(default=1e-4, metadata={"min": 0.0, "max": 1.0, "doc": "gemnet weight decay"})
    class_weights: bool = True
    mixed_precision: bool = field(default=True, metadata={"doc": "mixed_float16 when a GPU is present"})
    cache_features: bool = field(default=True, metadata={
        "doc": "frozen phase: compute the backbone once per image, train the head on its features"})
    head_solver: str = field(default="adam", metadata={"choices": ["adam", "lbfgs"], "doc": (
        "adam: head_epochs of Adam on the features, early-stopped on val; lbfgs: the head is a "
        "multinomial logistic regression on the L2-normalised features fitted to convergence, "
        "its penalty chosen on val from head_l2_grid (needs cache_features and a pretrained "
        "backbone)")})
    head_l2_grid: tuple[float, ...] = field(default_factory=lambda: (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                                      metadata={"doc": "lbfgs: the L2 penalties tried"})
    seed: int = field(default=42, metadata={"min": 0})


@dataclass(frozen=True)
class EvaluateParams:
    """Evaluating the trained model on the test split (pipeline/stages/evaluate.py)."""

    split: str = field(default="test", metadata={"choices": ["test", "val"]})
    top_k: tuple[int, ...] = field(default_factory=lambda: (1, 3, 5))
    report_classes: int = field(default=10, metadata={"min": 1, "max": 1000,
                                                      "doc": "highest/lowest precision classes shown"})
    contact_sheet: int = field(default=60, metadata={"min": 0, "max": 10000,
                                                     "doc": "misclassified test images shown"})
    tta: str = field(default="flip", metadata={
        "choices": ["none", "flip"],
        "doc": "test-time augmentation: flip averages each image with its mirror (predict too)"})
    external: tuple[str, ...] = field(default_factory=tuple, metadata={
        "doc": "labelled folders <class>/<images> of photos from outside the pipeline, scored "
               "as `gemcurate predict` scores a photo, beside the internal test"})
    baseline: bool = field(default=True, metadata={
        "doc": "with external folders: fit the raw-photo probe (logistic regression on the "
               "frozen embedding of the uncurated training photos) and score it on them too"})
    baseline_l2: float = field(default=1e-3, metadata={
        "min": 0.0, "max": 100.0, "doc": "the raw-photo probe's L2 penalty"})


@dataclass(frozen=True)
class PublishParams:
    """Dataset versions: git tags plus a DVC remote (pipeline/stages/publish.py)."""

    tag_prefix: str = field(default="dataset/v", metadata={
        "pattern": r"[A-Za-z0-9][A-Za-z0-9._/-]{0,60}", "doc": "git tags: letters, digits . _ / -"})
    remote: str = field(default="local", metadata={"pattern": r"[A-Za-z0-9][A-Za-z0-9._-]{0,60}",
                                                   "doc": "DVC remote name (.dvc/config)"})
    push: bool = True


@dataclass(frozen=True)
class ReviewParams:
    """The annotators' review app (pipeline/interfaces/review/)."""

    double_review: tuple[str, ...] = field(default_factory=tuple, metadata={
        "doc": "review reasons (certificate, hand, label_conflict, crop_*...) two annotators must "
               "agree on; a lead resolves disagreements"})
    page_size: int = field(default=60, metadata={"min": 10, "max": 500, "doc": "queue rows per page"})
    relabel_suggestions: int = field(default=9, metadata={"min": 1, "max": 9,
                                                          "doc": "classes offered on keys 1-9"})

    def check(self) -> None:
        for r in self.double_review:
            if not re.fullmatch(r"[a-z][a-z0-9_*]*", r):
                raise ConfigError(f"double_review: {r!r} is not a review reason (e.g. hand, crop_*)")


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    data: DataParams = field(default_factory=DataParams)
    scrape: ScrapeParams = field(default_factory=ScrapeParams)
    dedupe: DedupeParams = field(default_factory=DedupeParams)
    filter: FilterParams = field(default_factory=FilterParams)
    labels: LabelsParams = field(default_factory=LabelsParams)
    crop: CropParams = field(default_factory=CropParams)
    split: SplitParams = field(default_factory=SplitParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    export: ExportParams = field(default_factory=ExportParams)
    publish: PublishParams = field(default_factory=PublishParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    review: ReviewParams = field(default_factory=ReviewParams)


def load_params(path: str | Path | None = "params.yaml", overrides: dict | None = None) -> Params:
    """Load and validate ``params.yaml``.

    Args:
        path: The file; ``None`` or a missing default ``params.yaml`` gives defaults.
        overrides: Nested mapping merged over the file (CLI flags use this).

    Returns:
        The validated :class:`Params`.

    Raises:
        ConfigError: Naming the first bad key.

    Example:
        >>> load_params(None, {"scrape": {"concurrency": 2}}).scrape.concurrency
        2
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.exists() or str(path) != "params.yaml":
            data = read_yaml(p)
    for section, values in (overrides or {}).items():
        merged = dict(data.get(section) or {})
        merged.update({k: v for k, v in values.items() if v is not None})
        data[section] = merged
    return from_dict(Params, data, prefix="")


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-friendly dict of a (nested) config dataclass."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(obj)
