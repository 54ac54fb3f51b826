"""The review app's own state: accounts and double-review votes.

Kept out of the decisions database on purpose: that file is a DVC dependency of every
curation stage, and a login or a first vote must not make the pipeline stale. Only a
decision in force (one annotator's, two agreeing annotators', or a lead's) reaches the
decisions table. SQLite next to the decisions file by default; with ``data.review_db``
on PostgreSQL, the same database (other tables).

Passwords are stored as salted scrypt hashes (``werkzeug.security``); names are the
reviewer names decisions carry.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from pipeline.core.db import make_engine, sqlite_url
from pipeline.core.errors import UserError

ROLES = ("annotator", "lead")
NAME_RE = re.compile(r"[a-z][a-z0-9_.-]{1,31}")
MIN_PASSWORD = 10

meta = sa.MetaData()
users = sa.Table(
    "review_users", meta,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
)
votes = sa.Table(
    "review_votes", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(64), nullable=False, index=True),
    sa.Column("reviewer", sa.String(32), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("label", sa.String(128)),
    sa.Column("reason", sa.String(128)),
    sa.Column("note", sa.Text),
    sa.Column("voted_at", sa.DateTime(timezone=True), nullable=False),
    # the decision written when two votes agreed or a lead resolved them (0: open)
    sa.Column("resolved_by_decision", sa.Integer, nullable=False, default=0),
    sa.UniqueConstraint("image_id", "reviewer", "resolved_by_decision", name="ux_votes_once"),
)
settings = sa.Table(
    "review_settings", meta,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


class AccountError(UserError, ValueError):
    """A bad user name, role or password."""


def app_url(review_db: str | None, data_dir: str | Path) -> str:
    """Where the app keeps accounts and votes (see the module doc)."""
    if review_db and not review_db.startswith("sqlite"):
        return review_db
    if review_db:
        path = Path(review_db.removeprefix("sqlite:///"))
        return sqlite_url(path.with_name("review_app.sqlite"))
    return sqlite_url(Path(data_dir) / "state" / "review_app.sqlite")


class AppDB:
    """Accounts, votes and the session secret."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        meta.create_all(self.engine)

    # ------------------------------------------------------------------ accounts
    def add_user(self, name: str, role: str, password: str, replace: bool = False) -> None:
        if not NAME_RE.fullmatch(name or ""):
            raise AccountError(f"user name {name[:40]!r}: 2-32 of a-z 0-9 _ . - starting with a letter")
        if role not in ROLES:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
        if len(password or "") < MIN_PASSWORD:
            raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
        row = {"name": name, "role": role, "password_hash": generate_password_hash(password),
               "created_at": datetime.now(UTC), "active": True}
        with self.engine.begin() as c:
            exists = c.execute(sa.select(users.c.name).where(users.c.name == name)).first()
            if exists and not replace:
                raise AccountError(f"user {name} exists (--reset-password to change the password)")
            if exists:
                c.execute(users.update().where(users.c.name == name).values(**row))
            else:
                c.execute(users.insert().values(**row))
        self.revoke_sessions(name)  # a new password logs every browser out

    # ------------------------------------------------------------------ sessions
    def session_token(self, name: str) -> str:
        """The account's current session generation: every cookie carries it, and a cookie
        with another one is no login (:meth:`revoke_sessions` makes a new one)."""
        key = f"session:{name}"[:64]
        with self.engine.begin() as c:
            got = c.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar()
            if got:
                return got
            token = secrets.token_urlsafe(16)
            c.execute(settings.insert().values(key=key, value=token))
            return token

    def revoke_sessions(self, name: str) -> None:
        """Log ``name`` out everywhere (logout, a password change): old cookies stop working."""
        key = f"session:{name}"[:64]
        with self.engine.begin() as c:
            c.execute(settings.delete().where(settings.c.key == key))
            c.execute(settings.insert().values(key=key, value=secrets.token_urlsafe(16)))

    def check_login(self, name: str, password: str) -> dict | None:
        """The account when ``password`` is right (and it is active), else None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(users).where(users.c.name == (name or "")[:64])).mappings().first()
        if row is None:
            check_password_hash(generate_password_hash("x"), password or "")  # same time either way
            return None
        if not row["active"] or not check_password_hash(row["password_hash"], password or ""):
            return None
        return {"name": row["name"], "role": row["role"]}

    def user(self, name: str) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(users.c.name, users.c.role, users.c.active)
                            .where(users.c.name == name)).mappings().first()
        return dict(row) if row and row["active"] else None

    def secret(self) -> str:
        """The session-signing key, made once and kept (sessions survive a restart)."""
        with self.engine.begin() as c:
            got = c.execute(sa.select(settings.c.value).where(settings.c.key == "secret")).scalar()
            if got:
                return got
            key = secrets.token_hex(32)
            c.execute(settings.insert().values(key="secret", value=key))
            return key

    # ------------------------------------------------------------------ votes
    def vote(self, image_id: str, reviewer: str, decision: str, label: str | None,
             reason: str | None, note: str | None) -> list[dict]:
        """Record (or replace) ``reviewer``'s open vote; returns the image's open votes."""
        with self.engine.begin() as c:
            c.execute(votes.delete().where((votes.c.image_id == image_id) & (votes.c.reviewer == reviewer)
                                           & (votes.c.resolved_by_decision == 0)))
            c.execute(votes.insert().values(image_id=image_id, reviewer=reviewer, decision=decision,
                                            label=label, reason=reason, note=note,
                                            voted_at=datetime.now(UTC), resolved_by_decision=0))
        return self.open_votes(image_id)

    def withdraw(self, image_id: str, reviewer: str) -> bool:
        """Remove ``reviewer``'s open vote on ``image_id``; whether there was one."""
        with self.engine.begin() as c:
            res = c.execute(votes.delete().where((votes.c.image_id == image_id)
                                                 & (votes.c.reviewer == reviewer)
                                                 & (votes.c.resolved_by_decision == 0)))
            return res.rowcount > 0

    def open_votes(self, image_id: str) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(votes).where((votes.c.image_id == image_id)
                                                    & (votes.c.resolved_by_decision == 0))
                             .order_by(votes.c.id)).mappings()
            return [dict(r) for r in rows]

    def resolve(self, image_id: str, decision_id: int) -> None:
        with self.engine.begin() as c:
            c.execute(votes.update().where((votes.c.image_id == image_id)
                                           & (votes.c.resolved_by_decision == 0))
                      .values(resolved_by_decision=decision_id))

    def all_votes(self) -> pd.DataFrame:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(votes).order_by(votes.c.id)).mappings()
            return pd.DataFrame([dict(r) for r in rows],
                                columns=[col.name for col in votes.columns])

    def open_vote_map(self) -> dict[str, list[dict]]:
        """image_id → open votes, for the queue (one query)."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(votes.c.image_id, votes.c.reviewer, votes.c.decision,
                                       votes.c.label).where(votes.c.resolved_by_decision == 0)).mappings()
            out: dict[str, list[dict]] = {}
            for r in rows:
                out.setdefault(r["image_id"], []).append(dict(r))
            return out


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels for the same items (None: no items or no variance).

    ``(p_o - p_e) / (1 - p_e)``: observed agreement against the agreement expected from
    each rater's own label frequencies.
    """
    if len(a) != len(b) or not a:
        return None
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    cats = set(a) | set(b)
    p_e = sum((a.count(k) / n) * (b.count(k) / n) for k in cats)
    if p_e >= 1.0:
        return 1.0 if p_o == 1.0 else None
    return (p_o - p_e) / (1 - p_e)
