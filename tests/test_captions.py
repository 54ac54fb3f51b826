"""Attributes normalised from what stores call them, and captions with known answers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.core import captions


@pytest.mark.parametrize(("field", "name"), [
    ("color", "colour"), ("Colour", "colour"), ("metal", "material"), ("Gemstone", "stone"),
    ("shape", "cut"), ("Carat Weight", "carat"), ("category", "type"),
    ("country-of-origin", "origin"), ("price", None), ("sku", None)])
def test_store_fields_map_to_the_vocabulary(field, name):
    assert captions.canonical(field) == name


def test_values_are_normalised_and_the_label_fills_the_main_field():
    row = {"attr_colour": "  Vivid   Pink ", "attr_carat": "2,5 ct", "attr_cut": "Cushion-Cut",
           "attr_origin": "n/a", "attr_title": "A  Pink Sapphire", "label": "ignored", "price": "9"}
    a = captions.normalise(row, label="sapphire", kind="gems")
    assert a == {"colour": "vivid pink", "carat": "2.50", "cut": "cushion cut",
                 "title": "A Pink Sapphire", "stone": "sapphire"}
    assert captions.normalise({"attr_carat": "heavy", "attr_color": float("nan")}) == {}
    # a hostile store's control characters never reach a caption, a .json or a .txt
    hostile = captions.normalise({"attr_title": "Ruby\x1b[2J\x00 ring\x07"}, kind="gems")
    assert hostile["title"] == "Ruby[2J ring"
    # the first of two synonyms wins; a store's own stone field beats the label
    assert captions.normalise({"attr_color": "red", "attr_colour": "blue", "attr_gem": "spinel"},
                              label="ruby")["colour"] == "red"
    assert captions.normalise({"attr_gem": "spinel"}, label="ruby")["stone"] == "spinel"


def test_three_levels_and_partial_when_the_template_lacks_a_field():
    text, partial, missing = captions.captions(
        {"stone": "emerald", "colour": "deep green", "cut": "emerald", "carat": "1.20",
         "origin": "colombia"}, "gems")
    assert text == {"basic": "an emerald", "normal": "a deep green emerald, emerald cut",
                    "complete": "a 1.20 ct deep green emerald, emerald cut, from colombia"}
    assert not partial and missing == []
    text, partial, missing = captions.captions(
        captions.normalise({"attr_metal": "Yellow Gold", "attr_name": "Solitaire"}, label="rings",
                           kind="jewelry"), "jewelry")
    assert text == {"basic": "a ring", "normal": "a yellow gold ring",
                    "complete": "a yellow gold ring: Solitaire"}
    assert partial and missing == ["colour", "stone"]
    with pytest.raises(ValueError, match="caption kind"):
        captions.captions({}, "watches")


def test_describe_gives_every_row_its_captions_and_the_validate_contract():
    df = pd.DataFrame({"label": ["ruby", "opal"], "attr_color": ["red", None],
                       "attr_cut": ["oval", "cabochon"]})
    out = captions.describe(df, "gems")
    assert out["caption_normal"].tolist() == ["a red ruby, oval cut", "an opal, cabochon cut"]
    assert out["caption_partial"].tolist() == [True, True] and out["caption_consistent"].all()
    assert json.loads(out.at[0, "attributes"]) == {"colour": "red", "cut": "oval", "stone": "ruby"}
    assert out.at[1, "caption_missing"] == "carat,colour,origin"
