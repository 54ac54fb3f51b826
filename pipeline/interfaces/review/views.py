"""The review app's pages and JSON API: one Flask blueprint.

Views take what they need from the app they run in (:func:`_deps`: the project's review
data, accounts, params, data folder, login throttle), never from a closure, so a view is a
plain function a reader finds by name and ``create_app`` only wires.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import flask
from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from werkzeug.local import LocalProxy

from pipeline.core import decisions
from pipeline.core.config import Params
from pipeline.interfaces.review import accounts
from pipeline.interfaces.review.queue import REJECT_REASONS, ReviewData

logger = logging.getLogger("pipeline.interfaces.review.app")
bp = Blueprint("review", __name__)
THUMB = 192
# failed logins of one account from one address before that address waits for it: 30 s,
# doubling with each further failure, at most an hour (a stranger elsewhere locks out
# nobody but themselves); one address failing on many accounts waits too
MAX_FAILURES, FIRST_WAIT_S, MAX_WAIT_S = 5, 30, 3600
MAX_FAILURES_PER_ADDRESS = 20
LOCKOUT_S = FIRST_WAIT_S  # kept for readers of the old name
NOTE_MAX = 2000


@dataclass(frozen=True)
class Deps:
    """What the views read from the app (``app.extensions["gemcurate"]``)."""

    params: Params
    data_dir: Path
    data: ReviewData
    app_db: accounts.AppDB
    root: Path | None
    throttle: LoginThrottle


def _deps() -> Deps:
    return current_app.extensions["gemcurate"]


# the current app's dependencies under the names the views use
params: Params = LocalProxy(lambda: _deps().params)  # type: ignore[assignment]
data_dir: Path = LocalProxy(lambda: _deps().data_dir)  # type: ignore[assignment]
data: ReviewData = LocalProxy(lambda: _deps().data)  # type: ignore[assignment]
app_db: accounts.AppDB = LocalProxy(lambda: _deps().app_db)  # type: ignore[assignment]
throttle: LoginThrottle = LocalProxy(lambda: _deps().throttle)  # type: ignore[assignment]


class User(UserMixin):
    """A logged-in annotator; the cookie carries the account's session generation, so a
    logout or a new password (:meth:`AppDB.revoke_sessions`) ends every copy of it."""

    def __init__(self, name: str, role: str, token: str = "") -> None:
        self.id, self.name, self.role, self.token = name, name, role, token

    def get_id(self) -> str:
        return f"{self.name}|{self.token}"

    @property
    def is_lead(self) -> bool:
        return self.role == "lead"


def safe_next(raw: object) -> str | None:
    """A ``next`` target that stays on this app, read as a browser reads it; else None.

    Browsers drop tabs and newlines anywhere in a URL, strip leading and trailing spaces
    and control characters, and take ``\\`` for ``/``: ``/\t/evil.example`` is
    ``//evil.example``, another host. The check runs on what the browser will follow.
    """
    if not isinstance(raw, str) or len(raw) > 2000:
        return None
    text = "".join(c for c in raw if c not in "\t\n\r").strip("".join(map(chr, range(33))))
    text = text.replace("\\", "/")
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme or parts.netloc or not text.startswith("/") or text.startswith("//"):
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return text


class LoginThrottle:
    """Failed logins per (account, address) and per address, with a doubling wait."""

    def __init__(self) -> None:
        self.fails: dict[tuple[str, str], tuple[int, float]] = {}  # key → (count, locked until)

    def wait(self, name: str, addr: str, now: float) -> float:
        """Seconds ``addr`` must still wait before trying ``name`` (0: go ahead)."""
        return max(0.0, *(self.fails.get(k, (0, 0.0))[1] - now for k in ((name, addr), ("", addr))))

    def failed(self, name: str, addr: str, now: float) -> None:
        if len(self.fails) > 10_000:  # forget what no longer locks anything
            self.fails = {k: v for k, v in self.fails.items() if v[1] > now - MAX_WAIT_S}
        for key, limit in (((name, addr), MAX_FAILURES), (("", addr), MAX_FAILURES_PER_ADDRESS)):
            count = self.fails.get(key, (0, 0.0))[0] + 1
            until = now + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (count - limit)) if count >= limit else 0.0
            self.fails[key] = (count, until)

    def succeeded(self, name: str, addr: str) -> None:
        self.fails.pop((name, addr), None)


def _text(body: dict, key: str, limit: int, required: bool = False) -> str | None:
    """A JSON field that must be a string (or absent/null); raises ``ValueError`` saying so."""
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"{key}: required (a string)")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key}: a string, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{key}: at most {limit} characters")
    return value


def _whole(body: dict, key: str, default: int) -> int:
    """A JSON field that must be a whole number (not a bool, a float or Infinity)."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 19:
            return int(value)
        raise ValueError(f"{key}: a whole number")
    if abs(value) >= 2 ** 62:
        raise ValueError(f"{key}: out of range")
    return value


@bp.route("/login", methods=["GET", "POST"])
def login_page():
    error = None
    if request.method == "POST":
        name = request.form.get("name", "")[:64]
        addr = request.remote_addr or "?"
        now = time.monotonic()
        wait = throttle.wait(name, addr, now)
        if wait > 0:  # guessing passwords from here: this address waits, nobody else
            logger.warning("login for %r from %s refused: wait %.0f s", name[:40], addr, wait)
            return render_template("login.html", error="too many failed logins from your "
                                   f"address; try again in {int(wait) + 1} seconds"), 429
        u = app_db.check_login(name, request.form.get("password", ""))
        if u:
            throttle.succeeded(name, addr)
            login_user(User(u["name"], u["role"], app_db.session_token(u["name"])))
            # only a path on this app, as the browser will read it: no open redirect
            return redirect(safe_next(request.args.get("next", "")) or url_for(".queue"))
        throttle.failed(name, addr, now)
        error = "wrong name or password"
        logger.warning("failed login for %r from %s", name[:40].encode("unicode_escape").decode(),
                       addr)
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout():
    app_db.revoke_sessions(current_user.name)  # every copy of the cookie stops working
    logout_user()
    return redirect(url_for(".login_page"))


def filters() -> dict:
    return {"reason": request.args.get("reason") or None, "label": request.args.get("label") or None}


@bp.get("/")
@login_required
def queue():
    f = filters()
    q = data.queue(**f, user=current_user.name, role=current_user.role)
    size = params.review.page_size
    page = max(1, request.args.get("page", 1, type=int))
    items = q.items.iloc[(page - 1) * size: page * size]
    rows = [{"image_id": iid, "label": r["label"], "reasons": r["reasons"],
             "closeness": r["closeness"], "revisit": r["revisit"], "state": r["state"],
             "decision_id": r["decision_id"]} for iid, r in items.iterrows()]
    return render_template("queue.html", q=q, rows=rows, f=f, page=page,
                           pages=max(1, -(-len(q.items) // size)), total=len(q.items),
                           reject_reasons=REJECT_REASONS)


def neighbours(image_id: str, f: dict) -> tuple[str | None, str | None]:
    ids = list(data.queue(**f, user=current_user.name, role=current_user.role).items.index)
    if image_id in ids:
        k = ids.index(image_id)
        return (ids[k - 1] if k > 0 else None), (ids[k + 1] if k + 1 < len(ids) else None)
    return None, (ids[0] if ids else None)


@bp.get("/image/<image_id>")
@login_required
def image(image_id: str):
    row = data.row(image_id)
    if row is None:
        abort(404)
    f = filters()
    prev_id, next_id = neighbours(image_id, f)
    scores = []
    for name, cp in data.checks.items():
        s = row.get(f"{name}_score")
        if s is not None and s == s:
            scores.append({"name": name, "score": float(s), "threshold": cp.threshold,
                           "band": cp.review_band, "flagged": bool(row.get(f"is_{name}") is True)})
    w, h = row.get("width"), row.get("height")
    box = row.get("crop_box")
    box_css = None
    if box is not None and w and h and len(box) == 4:
        x0, y0, x1, y1 = (max(0.0, min(1.0, v)) for v in (box[0] / w, box[1] / h, box[2] / w, box[3] / h))
        box_css = {"left": x0 * 100, "top": y0 * 100, "width": (x1 - x0) * 100, "height": (y1 - y0) * 100}
    current = data.db.current(image_id)
    model_top, model_source = data.model_top(row)
    attrs = {k.removeprefix("attr_"): v for k, v in row.items()
             if k.startswith("attr_") and v is not None and v == v}
    return render_template(
        "image.html", row=row, scores=scores, box=box_css, f=f, prev_id=prev_id, next_id=next_id,
        cluster=data.cluster(row), history=data.db.history_of(image_id), attrs=attrs,
        current=current, expect=int(current["id"]) if current else 0,
        suggestions=data.suggestions(row, params.review.relabel_suggestions),
        model_top=model_top, model_source=model_source,
        labels=data.labels(), reject_reasons=REJECT_REASONS,
        votes=app_db.open_votes(image_id), double=data.needs_double(row["reasons"]),
        crop_conf=row.get("crop_confidence"), min_conf=params.crop.min_confidence,
        has_crop=data.crop_file(image_id) is not None)


@bp.get("/stats")
@login_required
def stats():
    return render_template("stats.html", s=compute_stats())


def compute_stats() -> dict:
    hist = data.db.history()
    per: list[dict] = []
    if len(hist):
        hist["decided_at"] = hist["decided_at"].map(
            lambda t: t if getattr(t, "tzinfo", None) else t.replace(tzinfo=UTC))
        for who, g in hist.groupby("reviewer"):
            g = g.sort_values("decided_at")
            gaps = g["decided_at"].diff().dt.total_seconds().dropna()
            gaps = gaps[gaps < 600]  # a pause is not review time
            per.append({"reviewer": who, "decisions": len(g),
                        "today": int((g["decided_at"] >= datetime.now(UTC).replace(
                            hour=0, minute=0, second=0, microsecond=0)).sum()),
                        "median_s": float(gaps.median()) if len(gaps) else None,
                        "per_hour": 3600.0 / float(gaps.median()) if len(gaps) and gaps.median() > 0
                        else None})
    votes = app_db.all_votes()
    pairs: dict[tuple[str, str], tuple[list, list]] = {}
    first, second = [], []
    for _, g in votes.groupby(["image_id", "resolved_by_decision"]) if len(votes) else []:
        g = g.sort_values("id")
        if len(g) < 2:
            continue
        a, b = g.iloc[0], g.iloc[1]
        va, vb = f"{a['decision']}:{a['label'] or ''}", f"{b['decision']}:{b['label'] or ''}"
        first.append(va)
        second.append(vb)
        key = tuple(sorted((a["reviewer"], b["reviewer"])))
        la, lb = pairs.setdefault(key, ([], []))
        la.append(va if key[0] == a["reviewer"] else vb)
        lb.append(vb if key[0] == a["reviewer"] else va)
    kappa = [{"pair": f"{a} / {b}", "images": len(x), "kappa": accounts.cohen_kappa(x, y),
              "agree": sum(i == j for i, j in zip(x, y, strict=True)) / len(x)}
             for (a, b), (x, y) in sorted(pairs.items())]
    pending = None
    latest = None
    root = _deps().root
    if root is not None:
        from pipeline.interfaces.airflow import orchestration

        try:
            latest = orchestration.latest_version(root)
            pending = orchestration.pending_decisions(root, str(data_dir.relative_to(root))
                                                      if data_dir.is_relative_to(root) else "data")
        except Exception as exc:  # not a git repo, no tags: say so, do not fail the page
            logger.info("stats: no published version to compare with (%s)", exc)
    q = data.queue()
    return {"per": per, "kappa": kappa,
            "overall_kappa": accounts.cohen_kappa(first, second) if first else None,
            "double_images": len(first), "pending": pending,
            "latest": latest[0] if latest else None, "left": q.left, "done": q.done,
            "counts": q.counts, "total_decisions": len(hist), "label_issues": label_issue_outcomes()}


def label_issue_outcomes() -> dict[str, int]:
    """What annotators made of flagged label issues (the decision in force per image): the
    detector's measured precision on real decisions is confirmed / (confirmed + dismissed)."""
    latest = data.db.latest()
    if not len(latest) or "reason" not in latest:
        return {"confirmed": 0, "dismissed": 0, "rejected": 0, "precision": None}
    answered = latest[latest["reason"].astype("string").fillna("").str.split(";").map(
        lambda rs: "label_issue" in rs)]
    n = {"confirmed": int((answered["decision"] == "relabel").sum()),
         "dismissed": int((answered["decision"] == "accept").sum()),
         "rejected": int((answered["decision"] == "reject").sum())}
    judged = n["confirmed"] + n["dismissed"]
    return {**n, "precision": n["confirmed"] / judged if judged else None}


@bp.get("/decisions.csv")
@login_required
def decisions_csv():
    buf = io.StringIO()
    export_csv(data.db, buf)
    return flask.Response(buf.getvalue(), mimetype="text/csv",
                          headers={"Content-Disposition": "attachment; filename=decisions.csv"})


@bp.get("/favicon.ico")
def favicon():
    return flask.Response(status=204)


def send(f: Path | None) -> flask.Response:
    if f is None:
        abort(404)
    return send_file(f, mimetype=_mime(f), max_age=86400, conditional=True)


@bp.get("/img/<image_id>")
@login_required
def img(image_id: str):
    return send(data.image_file(image_id))


@bp.get("/crop/<image_id>")
@login_required
def crop(image_id: str):
    return send(data.crop_file(image_id))


@bp.get("/thumb/<image_id>")
@login_required
def thumb(image_id: str):
    f = data.image_file(image_id)
    cache = data_dir / "review_cache" / "thumbs" / f"{image_id}.jpg"
    if f is not None and not cache.exists():
        _make_thumb(f, cache)
    return send(cache if f is not None else None)


def decide_one(image_id: str, body: dict) -> tuple[dict, int]:
    row = data.row(image_id)
    if row is None:
        return {"error": "no such image"}, 404
    try:
        action = _text(body, "action", 16, required=True)
        label = _text(body, "label", 128)
        reason = _text(body, "reason", 64)
        note = _text(body, "note", NOTE_MAX)
        expect = _whole(body, "expect", -1)
    except ValueError as exc:
        return {"error": str(exc)}, 400
    if action not in ("accept", "reject", "relabel", "revisit"):
        return {"error": f"action {str(action)[:30]!r}: accept, reject, relabel or revisit"}, 400
    if action == "reject" and reason not in REJECT_REASONS:
        return {"error": f"a reject needs a reason: {', '.join(REJECT_REASONS)}"}, 400
    if action == "reject" and reason == "other" and not note:
        return {"error": "reject as other needs a note"}, 400
    if action != "reject":  # the reasons it answers (the stats count label issues confirmed)
        reason = ";".join(row["reasons"])[:128] or None
    labels = set(data.labels())
    if action == "relabel" and label not in labels:
        return {"error": f"{str(label)[:60]!r} is not a class of this project"}, 400
    if expect < 0:
        return {"error": "expect: the decision id the page showed (0: none)"}, 400
    known = decisions.Known(frozenset([image_id]), frozenset(labels))
    by = current_user.name
    try:
        if data.needs_double(row["reasons"]) and action != "revisit" and not current_user.is_lead:
            now = data.db.current(image_id)
            if (int(now["id"]) if now else 0) != expect:
                who = f"{now['decision']} by {now['reviewer']}" if now else "a change"
                raise decisions.DecisionConflict(
                    f"{image_id[:12]}…: {who} was recorded since you opened the image; look again "
                    "and decide", now)
            decisions.validate(action, label, by, image_id, known, False, reason, note)
            votes = app_db.vote(image_id, by, action, label, reason, note)
            voters = {v["reviewer"] for v in votes}
            if len(voters) < 2:
                return {"ok": True, "state": "voted", "message": "vote recorded; a second "
                        "annotator decides too"}, 200
            if len({(v["decision"], v["label"]) for v in votes}) > 1:
                return {"ok": True, "state": "disputed", "message": "the annotators disagree: "
                        "a lead decides"}, 200
            did = data.db.record(image_id, action, "+".join(sorted(voters)), label=label,
                                 reason=reason, note=f"double review: {', '.join(sorted(voters))} "
                                 "agree" + (f"; {note}" if note else ""), known=known, expect=expect)
            app_db.resolve(image_id, did)
            return {"ok": True, "state": "agreed", "decision_id": did}, 200
        did = data.db.record(image_id, action, by, label=label, reason=reason, note=note,
                             known=known, expect=expect)
        if app_db.open_votes(image_id):
            app_db.resolve(image_id, did)  # a lead's word settles a double review
        return {"ok": True, "state": "decided", "decision_id": did}, 200
    except decisions.DecisionConflict as exc:
        return {"error": str(exc), "current": _jsonable(exc.current)}, 409
    except decisions.DecisionError as exc:
        return {"error": str(exc)}, 400


@bp.post("/api/decide")
@login_required
def api_decide():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="the body is a JSON object {image_id, action, …}"), 400
    try:
        image_id = _text(body, "image_id", 64, required=True)
        f = {"reason": _text(body, "filter_reason", 64), "label": _text(body, "filter_label", 128)}
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    out, code = decide_one(image_id, body)
    if code == 200:
        _, nxt = neighbours(image_id, f)
        out["next"] = url_for(".image", image_id=nxt, **{k: v for k, v in f.items() if v}) if nxt \
            else url_for(".queue", **{k: v for k, v in f.items() if v})
    return jsonify(out), code


@bp.post("/api/undo")
@login_required
def api_undo():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="the body is a JSON object {image_id, decision_id}"), 400
    try:
        image_id = _text(body, "image_id", 64, required=True)
        did = _whole(body, "decision_id", 0)
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    if data.row(image_id) is None:
        return jsonify(error="no such image"), 404
    if body.get("vote"):
        if not app_db.withdraw(image_id, current_user.name):
            return jsonify(error="no open vote of yours on this image"), 409
        return jsonify(ok=True, state="vote withdrawn")
    now = data.db.current(image_id)
    if now is None or int(now["id"]) != did:
        return jsonify(error="another decision was recorded since: look again",
                       current=_jsonable(now)), 409
    if now["reviewer"] != current_user.name and not current_user.is_lead:
        return jsonify(error=f"{now['reviewer']}'s decision: only they or a lead may undo it"), 403
    prev = None
    if now.get("supersedes"):
        prev = next((h for h in data.db.history_of(image_id) if h["id"] == now["supersedes"]), None)
    try:
        if prev is None or prev["decision"] == "revoke":
            new = data.db.record(image_id, "revoke", current_user.name, note=f"undo of #{did}",
                                 expect=did)
        else:
            new = data.db.record(image_id, prev["decision"], current_user.name, label=prev["label"],
                                 reason=prev["reason"], note=f"undo of #{did}", expect=did)
    except decisions.DecisionConflict as exc:
        return jsonify(error=str(exc), current=_jsonable(exc.current)), 409
    return jsonify(ok=True, state="undone", decision_id=new,
                   url=url_for(".image", image_id=image_id))


@bp.post("/api/bulk")
@login_required
def api_bulk():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="the body is a JSON object {items, action, confirm, …}"), 400
    items = body.get("items") or []
    if not body.get("confirm"):
        return jsonify(error="a bulk action needs confirm: true"), 400
    if not isinstance(items, list) or not items or len(items) > 500:
        return jsonify(error="items: 1 to 500 {image_id, expect}"), 400
    done, failed = 0, []
    for it in items:
        if not isinstance(it, dict) or not isinstance(it.get("image_id"), str):
            return jsonify(error="items: 1 to 500 {image_id, expect}"), 400
        out, code = decide_one(it["image_id"][:64], {**body, "expect": it.get("expect")})
        if code == 200:
            done += 1
        else:
            failed.append({"image_id": str(it.get("image_id", ""))[:64], "error": out["error"]})
    return jsonify(ok=not failed, done=done, failed=failed), 200 if not failed else 207


def _jsonable(d: dict | None) -> dict | None:
    if d is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in d.items()}


def _mime(f: Path) -> str:
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
            "gif": "image/gif"}.get(f.suffix.lower().lstrip("."), "application/octet-stream")


def _make_thumb(src: Path, dest: Path) -> None:
    from PIL import Image

    from pipeline.core.atomic import atomic_path

    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.draft("RGB", (THUMB * 2, THUMB * 2))
        im = im.convert("RGB")
        im.thumbnail((THUMB, THUMB))
        with atomic_path(dest) as tmp:
            im.save(tmp, "JPEG", quality=80)


def export_csv(db: decisions.Decisions, out) -> int:
    """Every decision (the full history, oldest first) as CSV; the row count.

    The columns are those ``gemcurate decisions import`` reads, plus ``id`` and ``supersedes``
    (the decision in force before it). Text cells that a spreadsheet would run as a formula
    are prefixed with a quote.
    """
    hist = db.history()
    cols = ["id", *decisions.COLUMNS, "supersedes"]
    w = csv.writer(out)
    w.writerow(cols)
    for r in hist[cols].itertuples(index=False):
        w.writerow(["'" + str(v) if isinstance(v, str) and v[:1] in "=+-@" else
                    ("" if v is None or v != v else v) for v in r])
    return len(hist)
