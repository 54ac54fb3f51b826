"""The storefront's catalog flags: one definition for ``gemcurate store serve``/``truth``,
the demo, the tests and the benchmarks, so the same flags always mean the same catalog.

Example:
    >>> opts = catalog_options_from_args(["--seed", "3", "--classes", "4"])
    >>> from pipeline.demo.layouts import ground_truth
    >>> ground_truth(Catalog.build(opts))["products"][:1]
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.core.config import ConfigError

if TYPE_CHECKING:  # the catalog (the drawing code, OpenCV) loads when a catalog is asked for:
    # every `gemcurate` command builds its parser with these flags
    from pipeline.demo.catalog import CatalogOptions


def add_catalog_flags(p: argparse.ArgumentParser) -> None:
    """Add the catalog flags (``--seed``, ``--classes`` …) to a parser."""
    g = p.add_argument_group("catalog")
    g.add_argument("--seed", type=int, default=0, help="catalog seed (default 0)")
    g.add_argument("--kind", choices=("gems", "jewelry"), default="gems",
                   help="what a generated store sells: loose gems (20 classes) or jewelry "
                        "(ring, necklace, bracelet, earrings, watch; pages with material and colour)")
    g.add_argument("--classes", default="12",
                   help="number of classes (gems 1-20, jewelry 1-5) or a comma-separated list of names")
    g.add_argument("--products-per-class", type=int, default=30)
    g.add_argument("--epoch", type=int, default=0,
                   help="catalog epoch: stock changes deterministically from one to the next")
    g.add_argument("--catalog", metavar="PATH",
                   help="serve a labelled folder tree <class>/<images> instead of generating")
    g.add_argument("--junk", action="append", default=[], metavar="KIND=PATH",
                   help="mix the images of PATH into products as junk KIND (certificate, hand)")
    g.add_argument("--min-images", type=int, default=2)
    g.add_argument("--max-images", type=int, default=6)
    g.add_argument("--junk-scale", type=float, default=1.0,
                   help="multiply the share of certificate/hand/duplicate/broken images")
    g.add_argument("--churn", type=float, default=None, metavar="SHARE",
                   help="approximate share of images added, changed or removed from one epoch to "
                        "the next (default about 0.17)")


def catalog_options(a: argparse.Namespace) -> CatalogOptions:
    """The validated :class:`CatalogOptions` of parsed catalog flags.

    Raises:
        ConfigError: Naming the bad flag.
    """
    from pipeline.demo.catalog import CatalogOptions

    classes: int | tuple[str, ...]
    classes = int(a.classes) if a.classes.isdigit() else tuple(
        c.strip() for c in a.classes.split(",") if c.strip())
    junk = []
    for item in a.junk:
        kind, sep, path = item.partition("=")
        if not sep or kind not in ("certificate", "hand") or not path:
            raise ConfigError(f"--junk {item!r}: expected certificate=PATH or hand=PATH")
        junk.append((kind, path))
    if a.products_per_class < 1:
        raise ConfigError("--products-per-class: must be at least 1")
    if a.epoch < 0:
        raise ConfigError("--epoch: must be 0 or more")
    if a.churn is not None and not 0 <= a.churn <= 1:
        raise ConfigError("--churn: must be a share in [0, 1]")
    if not 1 <= a.min_images <= a.max_images:
        raise ConfigError("--min-images/--max-images: need 1 <= min <= max")
    return CatalogOptions(seed=a.seed, classes=classes, products_per_class=a.products_per_class,
                          epoch=a.epoch, catalog=a.catalog, junk=tuple(junk),
                          min_images=a.min_images, max_images=a.max_images,
                          junk_scale=a.junk_scale, churn=a.churn, kind=a.kind)


def catalog_options_from_args(args: list[str]) -> CatalogOptions:
    """The catalog that ``gemcurate store serve ARGS`` serves (other serve flags are ignored)."""
    p = argparse.ArgumentParser(add_help=False)
    add_catalog_flags(p)
    ns, _ = p.parse_known_args([str(a) for a in args])
    return catalog_options(ns)
