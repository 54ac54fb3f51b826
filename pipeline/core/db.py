"""SQL engines for gemcurate's state databases (crawl state, annotator decisions).

SQLite by default (a file under the data dir), PostgreSQL (or any SQLAlchemy URL)
in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event


def sqlite_url(path: str | Path) -> str:
    """``sqlite:///<path>``, creating the file's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout (several processes share it)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    return engine
