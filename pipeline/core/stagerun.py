"""The one runner every stage's ``main`` is.

A stage says once what it reads and what it is called; the runner does what every stage
did by hand before (2026-12-07: seven copies of the same wrapper): hold the data dir's lock,
resolve where to read and write (:class:`~pipeline.core.stageio.StageIO`) and whether to show
progress (the argument, else the stage's ``progress`` param), read and check its input
manifest, run the body, then write what the body returns — its manifest through the
manifest contract, its metrics, the caches and ledgers it updated, in that order — and log
its one-line summary.

Example:
    >>> @stage("crop", reads="filter", per_shard=run_shard)
    ... def main(run: StageRun, df: pd.DataFrame) -> StageResult:
    ...     cache = ResultCache(run.io.data_dir / "crop", run.params.crop, CODE)
    ...     out, metrics = crop(df, run.params, cache=cache, progress=run.progress)
    ...     return StageResult(metrics, out, state=(cache,), summary=f"crop: {metrics['cropped']}")

``main(params, data_dir=None, progress=None, **extra)`` is what the CLI, the DAGs and the
tests call; ``shard=(i, n)`` runs the stage's share of per-image work instead. A shard writes
no manifest and holds no lock: shards run at once on several workers, each writing its own
file of the stage's cache atomically, and the next full run reuses every row they computed
under the same params and code, so its outputs are those of a one-process run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.config import Params
from pipeline.core.lock import data_dir_lock
from pipeline.core.stageio import Saves, StageIO


@dataclass(frozen=True)
class StageRun:
    """What a stage's body is given: its params, where it reads and writes, and whether to
    show progress bars."""

    name: str
    params: Params
    io: StageIO
    progress: bool


@dataclass
class StageResult:
    """What a stage's body returns for the runner to write.

    ``manifest`` goes through the stage's manifest contract (None: the stage writes no
    manifest, only metrics); ``state`` are the caches and ledgers to save after it;
    ``then`` runs on the written manifest (plots, tables); ``returned`` is what ``main``
    returns when it is not ``metrics`` (a trimmed copy).
    """

    metrics: dict
    manifest: pd.DataFrame | None = None
    state: tuple[Saves, ...] = ()
    summary: str = ""
    then: tuple[Callable[[pd.DataFrame], None], ...] = ()
    returned: dict | None = None
    #: ``metrics/<stage>.json`` (a report by hand writes none)
    write_metrics: bool = True


def _progress(params: Params, name: str, progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    return bool(getattr(getattr(params, name, None), "progress", False))


def stage(name: str, reads: str | None = None, *,
          per_shard: Callable[..., dict] | None = None) -> Callable[[Callable[..., StageResult]], Callable]:
    """Make ``body(run, df, **extra) -> StageResult`` the stage ``name``'s ``main``.

    ``reads`` names the manifest it reads (checked: ids, paths, the stage's columns);
    without it ``df`` is None and the body reads what it needs through ``run.io``.
    ``per_shard`` is the stage's ``run_shard(params, shard, data_dir, progress)``.
    """
    log = logging.getLogger(f"pipeline.stages.{name}")

    def wrap(body: Callable[..., StageResult]) -> Callable[..., dict]:
        @functools.wraps(body)
        def main(params: Params, data_dir: str | Path | None = None, progress: bool | None = None,
                 shard: tuple[int, int] | None = None, **extra: Any) -> dict:
            if shard is not None:
                if per_shard is None:
                    raise ValueError(f"{name} has no per-image work to shard")
                return per_shard(params, shard, data_dir, progress)
            with data_dir_lock(data_dir or params.data.data_dir, f"gemcurate {name}"):
                run = StageRun(name, params, StageIO.of(params, data_dir),
                               _progress(params, name, progress))
                df = run.io.read(reads) if reads else None
                result = body(run, df, **extra)
                if result.manifest is not None:
                    written = run.io.write(name, result.manifest, result.metrics, *result.state)
                else:
                    if result.write_metrics:
                        run.io.write_metrics(name, result.metrics)
                    for s in result.state:
                        s.save()
                    written = None
                for step in result.then:
                    step(written)
                if result.summary:
                    log.info("%s", result.summary)
                return result.metrics if result.returned is None else result.returned

        main.__doc__ = body.__doc__
        if per_shard is not None:
            main.__doc__ = f"{body.__doc__}\n\nWith ``shard=(i, n)``: {per_shard.__doc__}"
        return main

    return wrap
