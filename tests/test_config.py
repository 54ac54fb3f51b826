from pathlib import Path

import pytest

from pipeline.core.config import ConfigError, load_params
from pipeline.stages.scrape.site import load_site

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_load():
    p = load_params(ROOT / "params.yaml")
    assert p.scrape.concurrency == 4
    assert p.scrape.formats == ("JPEG", "PNG", "WEBP")


def test_defaults_without_file():
    assert load_params(None).data.data_dir == "data"


def test_overrides_merge_and_ignore_none():
    p = load_params(None, {"scrape": {"concurrency": 2, "max_rate": None}})
    assert p.scrape.concurrency == 2 and p.scrape.max_rate == 20.0


@pytest.mark.parametrize("text, message", [
    ("scrape:\n  concurency: 3\n", "scrape.concurency: unknown key (did you mean 'concurrency'?)"),
    ("scrape:\n  concurrency: three\n", "scrape.concurrency: expected an integer"),
    ("scrape:\n  concurrency: 0\n", "scrape.concurrency: 0 is below the minimum 1"),
    ("scrape:\n  jitter: 2\n", "scrape.jitter: 2.0 is above the maximum"),
    ("scrape:\n  formats: [JPEG, HEIC]\n", "scrape.formats: 'HEIC' is not one of"),
    ("scrape:\n  respect_robots: 'yes'\n", "scrape.respect_robots: expected true or false"),
    ("scrape:\n  min_side: 500\n  max_side: 100\n", "scrape.min_side: 500 exceeds max_side 100"),
    ("scrap:\n  x: 1\n", "scrap: unknown key (did you mean 'scrape'?)"),
    ("scrape: [1, 2]\n", "scrape: expected a mapping"),
    ("scrape:\n  concurrency: [\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping at the top level"),
])
def test_malformed_params_name_the_key(tmp_path, text, message):
    f = tmp_path / "params.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_params(f)
    assert message in str(exc.value)


def test_missing_params_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_params_are_frozen():
    p = load_params(None)
    with pytest.raises(AttributeError):
        p.scrape.concurrency = 9  # type: ignore[misc]


def test_demo_site_loads():
    s = load_site(ROOT / "sites" / "demo.yaml", "http://127.0.0.1:9")
    assert s.name == "demo" and s.base_url == "http://127.0.0.1:9"
    assert "title" in s.product.attributes


@pytest.mark.parametrize("patch, message", [
    ({"product": {"images": "div[["}}, "product.images: invalid CSS selector"),
    ({"product": {"images": "a::attr(href)", "label_pattern": "(["}}, "invalid regular expression"),
    ({"base_url": "ftp://x"}, "base_url: 'ftp://x' is not an http(s) URL"),
    ({"name": "Bad Name"}, "name: 'Bad Name' does not match"),
    ({"product": {"label": "a"}}, "product: missing required key(s): images"),
    ({"next_pag": "a"}, "next_pag: unknown key (did you mean 'next_page'?)"),
])
def test_malformed_site_yaml(tmp_path, patch, message):
    import yaml

    data = yaml.safe_load((ROOT / "sites" / "demo.yaml").read_text())
    for k, v in patch.items():
        data[k] = v
    f = tmp_path / "site.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_site(f)
    assert message in str(exc.value) and str(f) in str(exc.value)
