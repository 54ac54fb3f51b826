"""A product's attributes, normalised, and three captions per image built from them.

Stores name their fields differently (``color``, ``metal``, ``shape``, ``weight``) and write
their values as they like (``1.50 ct``, ``  Deep  Blue``). A site adapter keeps each field it
extracts as an ``attr_<name>`` manifest column; here they become one vocabulary:

``type, material, colour, stone, cut, carat, origin, title``

(:data:`SYNONYMS` maps the usual other names; a site YAML may also name its attributes with
these names directly). The class label fills the catalog kind's main field when the store
gives none: the ``stone`` of a gem store, the ``type`` of a jewelry store.

Captions come at three levels, as the jewelry captioning work among the project's
references trains them — the type of piece; type, colour and material; the complete
description — from one documented template per catalog kind (:data:`TEMPLATES`). A
template is a list of segments; a segment whose attribute the store did not give is left
out, and the caption is then marked **partial** (the validate stage checks that every
caption either has what its template needs or says it is partial).

Example:
    >>> attrs = normalise({"attr_color": " Deep Blue ", "attr_weight": "1.5 ct", "attr_cut": "Oval"},
    ...                   label="sapphire", kind="gems")
    >>> attrs
    {'colour': 'deep blue', 'carat': '1.50', 'cut': 'oval', 'stone': 'sapphire'}
    >>> captions(attrs, "gems")[0]["normal"]
    'a deep blue sapphire, oval cut'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import pandas as pd

NAMES = ("type", "material", "colour", "stone", "cut", "carat", "origin", "title")
SYNONYMS = {
    "color": "colour", "metal": "material", "materials": "material", "gem": "stone",
    "gemstone": "stone", "shape": "cut", "cut_shape": "cut", "weight": "carat", "carats": "carat",
    "carat_weight": "carat", "ct": "carat", "category": "type", "kind": "type",
    "product_type": "type", "name": "title", "product_name": "title", "country": "origin",
    "country_of_origin": "origin",
}
KINDS = ("gems", "jewelry")
MAIN = {"gems": "stone", "jewelry": "type"}  # the field the class label fills
LEVELS = ("basic", "normal", "complete")

#: per kind and level: segments (text with {fields}); a segment missing a field is left out
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "gems": {
        "basic": ("a {stone}",),
        "normal": ("a {colour}", "{stone}", ", {cut} cut"),
        "complete": ("a {carat} ct", "{colour}", "{stone}", ", {cut} cut", ", from {origin}"),
    },
    "jewelry": {
        "basic": ("a {type}",),
        "normal": ("a {colour}", "{material}", "{type}"),
        "complete": ("a {colour}", "{material}", "{type}", "set with {stone}", ": {title}"),
    },
}
_FIELD = re.compile(r"\{(\w+)\}")
_SPACES = re.compile(r"\s+")
# a store's text goes into captions, JSON and .txt files: its control characters are dropped
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"(\d+(?:[.,]\d+)?)")


def canonical(name: str) -> str | None:
    """The vocabulary name of a store field (None: not one of :data:`NAMES`)."""
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    key = SYNONYMS.get(key, key)
    return key if key in NAMES else None


def _value(name: str, raw: object) -> str | None:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    text = _SPACES.sub(" ", _CONTROL.sub("", str(raw))).strip()
    if not text or text.lower() in ("none", "null", "n/a", "-", "nan"):
        return None
    if name == "carat":
        m = _NUMBER.search(text)
        if not m:
            return None
        value = float(m.group(1).replace(",", "."))
        return f"{value:.2f}" if 0 < value < 10_000 else None
    if name == "title":
        return text[:200]
    text = text.lower().replace("-", " ").replace("_", " ")[:80]
    if name == "type" and text.endswith("s") and not text.endswith("ss"):
        text = text[:-1]  # a category names the plural ("rings"): a caption names one piece
    return text


def normalise(row: Mapping[str, object], label: str | None = None, kind: str = "gems") -> dict[str, str]:
    """The vocabulary attributes of a manifest row (its ``attr_*`` columns), first found wins;
    the label fills the kind's main field when the store gave none."""
    out: dict[str, str] = {}
    for col, raw in row.items():
        if not isinstance(col, str) or not col.startswith("attr_"):
            continue
        name = canonical(col.removeprefix("attr_"))
        if name is None or name in out:
            continue
        value = _value(name, raw)
        if value is not None:
            out[name] = value
    main = MAIN.get(kind)
    if main and main not in out and label:
        out[main] = _value(main, label) or label
    return out


def captions(attrs: Mapping[str, str], kind: str = "gems") -> tuple[dict[str, str], bool, list[str]]:
    """``({level: caption}, partial, missing fields)`` for one image's attributes."""
    if kind not in TEMPLATES:
        raise ValueError(f"caption kind {kind!r}: one of {', '.join(KINDS)}")
    out, missing = {}, set()
    for level in LEVELS:
        parts = []
        for seg in TEMPLATES[kind][level]:
            need = _FIELD.findall(seg)
            if all(attrs.get(f) for f in need):
                parts.append(seg.format(**{f: attrs[f] for f in need}))
            else:
                missing.update(f for f in need if not attrs.get(f))
        text = " ".join(parts).replace(" ,", ",").replace(" :", ":").strip()
        if text and not text.startswith(("a ", "an ")):
            text = "a " + text
        out[level] = re.sub(r"\ba ([aeiou])", r"an \1", text) if text else ""
    return out, bool(missing), sorted(missing)


def required(kind: str) -> list[str]:
    """The fields a complete caption of ``kind`` needs."""
    return sorted({f for seg in TEMPLATES[kind]["complete"] for f in _FIELD.findall(seg)})


def describe(ds: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Each row's normalised attributes (JSON) and captions at three levels
    ; ``caption_partial`` where the template lacked a field."""
    rows = []
    attr_cols = [c for c in ds.columns if c.startswith("attr_")]
    for r in ds[["label", *attr_cols]].to_dict("records"):
        attrs = normalise(r, label=r["label"], kind=kind)
        text, partial, missing = captions(attrs, kind)
        need = required(kind)
        rows.append({"attributes": json.dumps(attrs, sort_keys=True),
                     # the contract validate checks: a caption has what its template needs,
                     # or says it is partial
                     "caption_consistent": partial or all(attrs.get(f) for f in need),
                     **{f"caption_{k}": v for k, v in text.items()},
                     "caption_partial": partial, "caption_missing": ",".join(missing) or None})
    out = pd.DataFrame(rows, index=ds.index)
    out["caption_partial"] = out["caption_partial"].astype("boolean") if len(out) else \
        pd.Series(dtype="boolean")
    return out
