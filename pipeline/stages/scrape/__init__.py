"""``gemcurate scrape``: crawl a store into the content-addressed store and ``raw.parquet``.

The stage is :mod:`pipeline.stages.scrape.stage`; its names (``scrape``, ``format_summary``,
``EXIT_CODES`` …) are this package's too, loaded on first use. What needs only the site file
(:mod:`pipeline.stages.scrape.site`: the Airflow DAG file, which the dag-processor parses
every 30 s and every task parses again) then does not import the crawler, pandas and
SQLAlchemy: 0.8 s a parse.

Example:
    >>> from pipeline.stages.scrape import scrape
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    stage = importlib.import_module("pipeline.stages.scrape.stage")
    try:
        return getattr(stage, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
