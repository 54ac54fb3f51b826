"""The demo storefront: catalog determinism, epochs, truth, and the HTTP behaviour."""

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.demo.catalog import Catalog, CatalogOptions, _pid
from pipeline.demo.layouts import ground_truth
from pipeline.stages.scrape.downloads import sniff
from pipeline.synthetic.gems import GEM_CLASSES
from tests.helpers import JUNKY, catalog_options, truth_for

SMALL = CatalogOptions(seed=3, classes=3, products_per_class=6, junk_scale=4)


def test_catalog_is_deterministic():
    a, b = Catalog.generate(SMALL), Catalog.generate(SMALL)
    assert ground_truth(a) == ground_truth(b)
    e = next(iter(a.images.values()))
    assert a.render(e) == b.render(e)


def test_product_ids_are_unique_per_class():
    prefixes = {_pid(c, 0).rsplit("-", 1)[0] for c in GEM_CLASSES}
    assert len(prefixes) == len(GEM_CLASSES)


def test_default_catalog_size_and_junk_mix():
    t = ground_truth(Catalog.generate(CatalogOptions()))
    assert len(t["classes"]) == 12 and len(t["products"]) == 360
    counts = {p["n_images"] for p in t["products"]}
    assert min(counts) >= 2
    kinds = {im["kind"] for im in t["images"]}
    assert {"photo", "certificate", "hand", "dup_exact", "dup_near", "truncated", "corrupt",
            "html", "oversized"} <= kinds
    # certificate and hand file names sometimes, not always, say what they are
    certs = [im["url"] for im in t["images"] if im["junk"] == "certificate"]
    named = sum("certificate" in u for u in certs)
    assert 0 < named < len(certs)


def test_junky_catalog_has_every_kind():
    kinds = {im["kind"] for im in truth_for(JUNKY)["images"]}
    assert kinds == {"photo", "certificate", "hand", "dup_exact", "dup_near", "truncated",
                     "corrupt", "html", "oversized"}


def test_truth_boxes_hold_the_stone():
    cat = Catalog.generate(SMALL)
    photos = [e for e in cat.images.values() if e.kind == "photo"][:6]
    for e in photos:
        data, _ctype = cat.render(e)
        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(float)
        x0, y0, x1, y1 = cat.bbox(e)
        h, w = img.shape[:2]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and 400 <= max(w, h) <= 1200
        border = np.concatenate([img[:5].reshape(-1, 3), img[-5:].reshape(-1, 3)]).mean(0)
        inner = img[(y0 + y1) // 2 - 3:(y0 + y1) // 2 + 3, (x0 + x1) // 2 - 3:(x0 + x1) // 2 + 3]
        assert np.abs(inner.reshape(-1, 3).mean(0) - border).max() > 8  # the stone is not background


def test_duplicates_share_their_group_and_exact_copies_their_bytes():
    cat = Catalog.generate(CatalogOptions(seed=5, classes=4, products_per_class=10, junk_scale=5))
    dups = [e for e in cat.images.values() if e.kind == "dup_exact"]
    assert dups
    for e in dups[:3]:
        src = cat.source_entry(e.source)
        assert cat.render(e)[0] == cat.render(src)[0]
        assert e.dup_group == src.dup_group
    near = [e for e in cat.images.values() if e.kind == "dup_near"]
    assert near and all(cat.render(e)[0] != cat.render(cat.source_entry(e.source))[0]
                        for e in near[:3])


def test_epoch_changes_stock_deterministically():
    o0 = CatalogOptions(seed=1, classes=4, products_per_class=25)
    t0 = ground_truth(Catalog.generate(o0))
    t1 = ground_truth(Catalog.generate(CatalogOptions(**{**o0.__dict__, "epoch": 1})))
    p0 = {p["product_id"] for p in t0["products"]}
    p1 = {p["product_id"] for p in t1["products"]}
    assert p1 - p0 and p0 - p1  # products added and removed
    e0 = {im["url"]: im["etag"] for im in t0["images"]}
    e1 = {im["url"]: im["etag"] for im in t1["images"]}
    common = set(e0) & set(e1)
    changed = {u for u in common if e0[u] != e1[u]}
    assert changed and len(changed) < 0.15 * len(common)  # a few images re-shot at the same URL


def test_folder_mode_groups_files_and_mixes_junk(image_folder):
    o = CatalogOptions(seed=0, catalog=str(image_folder / "catalog"),
                       junk=(("certificate", str(image_folder / "certificate")),
                             ("hand", str(image_folder / "hand"))))
    t = ground_truth(Catalog.from_folder(o))
    assert sorted(t["classes"]) == ["bracelet", "necklace", "rings"]
    assert len(t["images"]) == 21 + 6
    assert sum(im["junk"] == "certificate" for im in t["images"]) == 3
    assert sum(im["junk"] == "hand" for im in t["images"]) == 3


def test_folder_mode_errors(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        Catalog.from_folder(CatalogOptions(catalog=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="no <class>/<image> files"):
        Catalog.from_folder(CatalogOptions(catalog=str(tmp_path)))


# 87 class names in the shape of a public gem catalog: many share their first letters
SHARED_PREFIXES = [
    "Quartz Rose", "Quartz Beer", "Quartz Lemon", "Quartz Rutilated", "Quartz Smoky",
    "Sapphire Blue", "Sapphire Pink", "Sapphire Purple", "Sapphire Yellow", "Onyx Black",
    "Onyx Green", "Onyx Red", "Rhodolite", "Rhodochrosite", "Amethyst", "Ametrine",
    "Chrysoberyl", "Chrysocolla", "Chrome Diopside", "Garnet Red", "Garnet Green",
    "Tourmaline", "Tourmaline Paraiba", "Tanzanite", "Tsavorite", "Topaz", "Turquoise",
    "Cat's Eye", "Carnelian", "Coral", "Citrine", "Diamond", "Danburite", "Emerald",
    "Fluorite", "Hessonite", "Hematite", "Iolite", "Jade", "Jasper", "Kunzite", "Kyanite",
    "Labradorite", "Lapis Lazuli", "Larimar", "Malachite", "Moonstone", "Morganite",
    "Moss Agate", "Aquamarine", "Alexandrite", "Almandine", "Andalusite", "Andradite",
    "Aventurine Green", "Aventurine Yellow", "Benitoite", "Beryl Golden", "Bloodstone",
    "Blue Lace Agate", "Cassiterite", "Cuprite", "Dumortierite", "Goshenite", "Grossular",
    "Hiddenite", "Kornerupine", "Spinel", "Spessartite", "Sphene", "Sunstone", "Pearl",
    "Peridot", "Pezzottaite", "Prehnite", "Pyrite", "Pyrope", "Rhodonite", "Ruby", "Scapolite",
    "Serpentine", "Sodalite", "Zircon", "Zoisite", "Variscite", "Bixbite", "Beryl Red",
]


def _tiny_tree(root, names, per_class=3):
    for c, name in enumerate(names):
        d = root / name
        d.mkdir(parents=True)
        for k in range(per_class):
            Image.new("RGB", (40, 40), (c % 256, k * 60, 90)).save(d / f"img {k} (1)#.png")
    return root


def test_a_folder_catalog_whose_class_names_share_prefixes_serves_every_file(tmp_path, storefront):
    """Product ids were the first three letters of the class and a counter: classes that
    share them overwrote each other (10 of 87 classes vanished without a word)."""
    assert len(set(SHARED_PREFIXES)) == 87
    root = _tiny_tree(tmp_path / "gems", SHARED_PREFIXES)
    t = ground_truth(Catalog.from_folder(CatalogOptions(seed=0, catalog=str(root))))
    assert sorted(t["classes"]) == sorted(SHARED_PREFIXES)
    assert len(t["images"]) == 87 * 3 and len({im["url"] for im in t["images"]}) == 87 * 3
    assert {im["label"] for im in t["images"]} == set(SHARED_PREFIXES)
    per = {}
    for p in t["products"]:
        per[p["label"]] = per.get(p["label"], 0) + p["n_images"]
    assert per == dict.fromkeys(SHARED_PREFIXES, 3)
    # and the store serves each of them, as the file it is
    s = storefront("--catalog", str(root), "--faults", "0", "--rate-limit", "2000", "--burst", "500")
    served = truth_for(s.args)
    assert len(served["images"]) == 87 * 3
    for im in served["images"][::7]:
        status, _, body = s.get(im["url"])
        assert status == 200 and sniff(body) == "PNG", im["url"]


def test_a_folder_catalog_refuses_classes_it_could_not_tell_apart(tmp_path):
    root = _tiny_tree(tmp_path / "gems", ["Quartz Rose", "quartz-rose"], per_class=1)
    with pytest.raises(ValueError, match="would share product ids"):
        Catalog.from_folder(CatalogOptions(catalog=str(root)))


# ---------------------------------------------------------------------------- HTTP


def test_pages_robots_and_conditional_get(storefront):
    s = storefront("--seed", "3", "--classes", "2", "--products-per-class", "14", "--faults", "0",
                   "--rate-limit", "500")
    status, headers, body = s.get("/robots.txt")
    assert status == 200 and b"Crawl-delay: 0.002" in body and b"Disallow: /cart" in body
    status, _, body = s.get("/category/amethyst")
    assert status == 200 and b"rel='next'" in body
    assert s.get("/category/amethyst?page=2")[0] == 200
    assert s.get("/category/amethyst?page=3")[0] == 404
    truth = truth_for(s.args)
    url = truth["images"][0]["url"]
    status, headers, body = s.get(url)
    assert status == 200 and headers["ETag"] == truth["images"][0]["etag"]
    assert s.get(url, {"If-None-Match": headers["ETag"]})[0] == 304
    assert s.get(url, {"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    stats = s.stats()
    assert stats["not_modified"] == 2 and stats["images_served_per_url_count"] == {"1": 1}


def test_another_seed_is_never_served_from_the_render_cache(storefront):
    """Two seeds draw different pictures under the same URLs; with one shared render cache,
    each store must serve its own bytes, and an ETag from one is no 304 at the other (the
    curation bench once scored crops against another seed's cached photos)."""
    flags = ["--classes", "2", "--products-per-class", "6", "--faults", "0", "--rate-limit", "500"]
    a = storefront("--seed", "11", *flags)
    ta = {im["url"]: im for im in truth_for(a.args)["images"]}
    cat_b = Catalog.build(catalog_options(["--seed", "12", *flags]))
    common = [e for e in cat_b.images.values()
              if e.kind == "photo" and e.url in ta and ta[e.url]["kind"] == "photo"][:3]
    assert common, "no URL shared by the two seeds"
    got_a = {e.url: a.get(e.url) for e in common}  # fills the render cache
    a.stop()
    b = storefront("--seed", "12", *flags)
    for e in common:
        _, ha, body_a = got_a[e.url]
        status, hb, body_b = b.get(e.url)
        assert status == 200 and hb["ETag"] == e.etag != ha["ETag"]
        assert body_b == cat_b.render(e)[0] != body_a
        assert b.get(e.url, {"If-None-Match": ha["ETag"]})[0] == 200


def test_junk_is_served_as_real_stores_serve_it(storefront):
    args = [*JUNKY, "--faults", "0", "--rate-limit", "500"]
    s = storefront(*args)
    truth = truth_for(args)
    by_kind = {}
    for im in truth["images"]:
        by_kind.setdefault(im["kind"], im)
    st, h, body = s.get(by_kind["html"]["url"])
    assert st == 200 and h["Content-Type"].startswith("text/html") and b"<html>" in body
    st, h, body = s.get(by_kind["oversized"]["url"])
    assert st == 200 and body.startswith(b"\x89PNG") and len(body) < 2_000_000
    st, _, body = s.get(by_kind["truncated"]["url"])
    assert st == 200 and sniff(body) is not None  # a real header, then the file just stops


def test_rate_limit_429_then_ban(storefront):
    s = storefront("--classes", "1", "--products-per-class", "2", "--rate-limit", "2",
                   "--burst", "2", "--faults", "0", "--ban-strikes", "3", "--ban-seconds", "30")
    codes = [s.get("/")[0] for _ in range(8)]
    assert codes[:2] == [200, 200] and 429 in codes and codes[-1] == 403
    st, h, _ = s.get("/")
    assert st == 403 and int(h["Retry-After"]) > 0
    stats = s.stats()
    assert stats["bans"] == 1 and stats["rate_limited"] >= 1


def test_429_carries_retry_after_and_waiting_avoids_a_ban(storefront):
    s = storefront("--classes", "1", "--products-per-class", "2", "--rate-limit", "1",
                   "--burst", "1", "--faults", "0", "--ban-strikes", "2")
    assert s.get("/")[0] == 200
    st, h, _ = s.get("/")
    assert st == 429
    time.sleep(float(h["Retry-After"]) + 0.05)
    assert s.get("/")[0] == 200
    assert s.stats()["bans"] == 0


def test_faults_are_injected(storefront):
    s = storefront("--classes", "1", "--products-per-class", "2", "--rate-limit", "1000",
                   "--burst", "1000", "--faults", "0.5")
    codes = []
    for _ in range(40):
        try:
            codes.append(s.get("/category/amethyst")[0])
        except Exception:
            codes.append("reset")
    faults = s.stats()["faults"]
    assert 503 in codes and sum(faults.values()) >= 8


def test_stats_endpoint_is_json(storefront):
    s = storefront("--classes", "1", "--products-per-class", "1")
    stats = json.loads(s.get("/_stats")[2])
    assert {"requests", "by_status", "by_kind", "rate_limited", "bans",
            "images_served_per_url_count"} <= set(stats)


def test_truth_cli_writes_file(tmp_path):
    from pipeline.interfaces.cli import main

    out = tmp_path / "truth.json"
    assert main(["store", "truth", "--classes", "2", "--products-per-class", "3", "--out",
                 str(out)]) == 0
    t = json.loads(out.read_text())
    assert len(t["products"]) == 6
    assert {"url", "label", "product_id", "junk", "dup_group", "bbox"} <= set(t["images"][0])


def test_jewelry_on_display_props_is_drawn_from_its_seed():
    """Hoops over a bar, rings in cushions, a necklace on a bust: the same seed gives the
    same picture, another seed another; an unknown prop is refused."""
    from pipeline.synthetic import props

    for prop in props.PROPS:
        a = props.render_on_prop(np.random.default_rng(3), prop)
        b = props.render_on_prop(np.random.default_rng(3), prop)
        c = props.render_on_prop(np.random.default_rng(4), prop)
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        assert 360 <= a.shape[0] <= 1000 and 500 <= a.shape[1] < 1000
        assert np.array_equal(a, b)
        assert a.shape != c.shape or not np.array_equal(a, c)
        assert a.std() > 8  # a piece on a prop, not a flat backdrop
    with pytest.raises(ValueError, match="prop must be one of"):
        props.render_on_prop(np.random.default_rng(0), "mannequin")


def test_a_jewelry_store_sells_pieces_whose_pages_say_their_metal_and_stone():
    """``--kind jewelry``: the five kinds of piece; every photo of a product shows one piece
    (its metal and stone fixed), and the page says them: material and colour (the stone's
    colour, else the metal's), the stone where the piece is set with one."""
    from pipeline.demo.catalog import MATERIALS, hue_word, piece_of
    from pipeline.synthetic import jewelry

    opts = CatalogOptions(seed=3, classes=5, products_per_class=4, kind="jewelry", junk_scale=3)
    cat = Catalog.generate(opts)
    assert cat.categories == sorted(jewelry.KINDS)
    assert ground_truth(cat) == ground_truth(Catalog.generate(opts))
    for p in cat.products.values():
        pc = piece_of(3, p.label, int(p.product_id.rsplit("-", 1)[1]))
        material, metal_colour = MATERIALS[pc.metal]
        assert p.attrs["material"] == material and material.title() in p.title
        if p.label in jewelry.SET_WITH_STONE:
            g = GEM_CLASSES[pc.gem]
            assert p.attrs["stone"] == pc.gem.replace("-", " ")
            assert p.attrs["colour"] == hue_word(g["h"], g["s"], g["v"])
        else:
            assert "stone" not in p.attrs and p.attrs["colour"] == metal_colour
    photos = [e for e in cat.images.values() if e.kind == "photo"]
    assert all(cat.bbox(e) is None for e in photos)  # no stone box in a jewelry store's truth
    for e in photos[:3] + [e for e in cat.images.values() if e.kind in ("certificate", "hand")][:2]:
        data, ctype = cat.render(e)
        assert ctype.startswith("image/") and Image.open(io.BytesIO(data)).size[0] >= 300
    # a product's shots are drawn (the piece fixed by piece_of, checked above via its page)
    ring = next(p for p in cat.products.values() if p.label == "ring")
    shots = [np.asarray(Image.open(io.BytesIO(cat.render(e)[0])).convert("RGB"))
             for e in ring.images if e.kind == "photo"]
    assert len(shots) >= 2 and all(s.std() > 5 for s in shots)
    # a gem store's classes are not a jewelry store's
    with pytest.raises(ValueError, match="unknown jewelry classes"):
        Catalog.generate(CatalogOptions(classes=("ruby",), kind="jewelry"))
    with pytest.raises(ValueError, match=r"1\.\.5 for a jewelry store"):
        Catalog.generate(CatalogOptions(classes=6, kind="jewelry"))
