"""The review app through Flask's test client: logins everywhere, CSRF on every state change,
ids checked, the queue's order with known answers, relabels, the version check (409),
undo, double review with Cohen's kappa, bulk actions, the audit CSV."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline.core import decisions, manifest
from pipeline.core.blobstore import BlobStore
from pipeline.interfaces.review.accounts import AccountError, AppDB, app_url, cohen_kappa
from pipeline.interfaces.review.app import create_app, export_csv
from tests.helpers import crop_manifest, params, photo_bytes

PASSWORD = "correct horse battery"


@pytest.fixture
def project(tmp_path):
    """A crop manifest of 12 real stored photos, 8 flagged with known scores."""
    data = tmp_path / "data"
    df = crop_manifest(data, classes=3, products=4, per_product=1, write_images=False)
    store = BlobStore(data / "store")
    ids = []
    for k in range(len(df)):
        iid, rel = store.put(photo_bytes(k), "jpg")
        ids.append(iid)
        df.loc[k, ["image_id", "path", "dup_cluster", "pixel_sha256"]] = [iid, rel, iid, iid]
        crop = data / "crops" / iid[:2] / f"{iid}.png"
        crop.parent.mkdir(parents=True, exist_ok=True)
        crop.write_bytes(photo_bytes(k, "PNG"))
        df.at[k, "crop_path"] = f"{iid[:2]}/{iid}.png"
    flags = {0: ("hand", 0.62), 1: ("hand", 0.45), 2: ("hand", 0.69), 3: ("certificate", 0.51),
             4: ("certificate", 0.35), 5: ("crop_cut_by_border", None), 6: ("label_conflict", None)}
    for k, (reason, score) in flags.items():
        df.at[k, "needs_review"] = True
        df.at[k, "review_reason"] = reason
        if score is not None:
            df.at[k, f"{reason}_score"] = score
    df.at[5, "crop_confidence"] = 0.3       # |0.3 - 0.5| = 0.2
    df.loc[[6, 7], "dup_cluster"] = ids[6]  # a conflict: two labels in one cluster
    df.at[8, "product_url"] = "javascript:alert(1)"
    df.at[8, "needs_review"] = True
    df.at[8, "review_reason"] = "hand;certificate"
    df.at[8, "hand_score"], df.at[8, "certificate_score"] = 0.4, 0.58
    out = manifest.conform(df, "crop")
    manifest.write_manifest(out, manifest.manifest_path(data, "crop"))
    return data, out, ids


def make_app(data, **review):
    p = params(data, review=review) if review else params(data)
    app = create_app(p, data, testing=True)
    db = AppDB(app_url(None, data))
    for name, role in (("ana", "annotator"), ("bo", "annotator"), ("lea", "lead")):
        if db.user(name) is None:
            db.add_user(name, role, PASSWORD)
    return app


def login(app, name):
    c = app.test_client()
    html = c.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = c.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    page = c.get("/").get_data(as_text=True)
    c.csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    return c


def api(c, path, body, csrf=True):
    return c.post(path, json=body, headers={"X-CSRFToken": c.csrf} if csrf else {})


def test_every_page_needs_a_login(project):
    data, _, ids = project
    c = make_app(data).test_client()
    for path in ("/", f"/image/{ids[0]}", f"/img/{ids[0]}", f"/crop/{ids[0]}", f"/thumb/{ids[0]}",
                 "/stats", "/decisions.csv"):
        r = c.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    assert c.post("/api/decide", json={}).status_code in (302, 400)  # no session: no way in
    bad = c.post("/login", data={"name": "ana", "password": "wrong password!"})
    assert bad.status_code == 400  # no CSRF token on the form either


def test_login_cookies_are_httponly_samesite_and_wrong_passwords_fail(project):
    data, _, _ = project
    app = make_app(data)
    c = app.test_client()
    html = c.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = c.post("/login", data={"name": "ana", "password": "not the password", "csrf_token": token})
    assert r.status_code == 401 and "wrong name or password" in r.get_data(as_text=True)
    r = c.post("/login?next=//evil.example/x", data={"name": "ana", "password": PASSWORD,
                                                      "csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"] == "/"  # no open redirect
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = c.get("/")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    db = AppDB(app_url(None, data))
    stored = db.engine.connect().execute(sa.text("select password_hash from review_users")).scalars().all()
    assert all(h.startswith("scrypt:") and PASSWORD not in h for h in stored)
    for _ in range(4):  # from one address: that address waits (see the stranger test below)
        c.post("/login", data={"name": "bo", "password": "guess guess", "csrf_token": token})
    assert c.post("/login", data={"name": "bo", "password": "guess guess",
                                  "csrf_token": token}).status_code == 401
    locked = c.post("/login", data={"name": "bo", "password": PASSWORD, "csrf_token": token})
    assert locked.status_code == 429 and "too many failed logins" in locked.get_data(as_text=True)
    with pytest.raises(AccountError, match="at least"):
        db.add_user("cy", "annotator", "short")
    with pytest.raises(AccountError, match="user name"):
        db.add_user("../cy", "annotator", PASSWORD)


def _login_form(c, name, password=PASSWORD, next_=None, addr="127.0.0.2"):
    html = c.get("/login", environ_base={"REMOTE_ADDR": addr}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    url = "/login" + (f"?next={next_}" if next_ is not None else "")
    return c.post(url, data={"name": name, "password": password, "csrf_token": token},
                  environ_base={"REMOTE_ADDR": addr})


@pytest.mark.parametrize("nxt", ["/%09/evil.example", "/%0a/evil.example", "%20//evil.example",
                                 "/%5Cevil.example", "%5C%5Cevil.example", "https:evil.example",
                                 "/\\evil.example", "javascript:alert(1)", "//evil.example"])
def test_login_never_redirects_off_the_app_however_next_is_spelled(project, nxt):
    data, _, _ = project
    r = _login_form(make_app(data).test_client(), "ana", next_=nxt)
    assert r.status_code == 302 and r.headers["Location"] == "/", r.headers["Location"]


def test_login_follows_next_on_the_app():
    from pipeline.interfaces.review.app import safe_next

    assert safe_next("/image/abc?reason=hand") == "/image/abc?reason=hand"
    assert safe_next("/\t/evil.example") is None and safe_next("\t//evil") is None
    assert safe_next(["/"]) is None and safe_next("stats") is None


def test_logout_and_a_new_password_revoke_every_copy_of_the_cookie(project):
    data, _, _ = project
    app = make_app(data)
    c = login(app, "ana")
    stolen = app.test_client()
    stolen.set_cookie("session", c.get_cookie("session").value)  # a captured cookie
    assert stolen.get("/").status_code == 200 and stolen.get("/decisions.csv").status_code == 200
    assert c.post("/logout", headers={"X-CSRFToken": c.csrf}).status_code == 302
    for path in ("/", "/decisions.csv"):
        r = stolen.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    c = login(app, "ana")
    assert c.get("/").status_code == 200
    AppDB(app_url(None, data)).add_user("ana", "annotator", PASSWORD + "!", replace=True)
    assert c.get("/").status_code == 302


def test_a_stranger_cannot_lock_out_an_annotator(project):
    """Wrong passwords lock the address that typed them, with a doubling wait, not the
    account for everyone; one address guessing many accounts is slowed too."""
    data, _, _ = project
    app = make_app(data)
    stranger, ana = app.test_client(), app.test_client()
    for _ in range(5):
        assert _login_form(stranger, "ana", "guess guess", addr="127.0.0.9").status_code == 401
    r = _login_form(stranger, "ana", addr="127.0.0.9")
    assert r.status_code == 429 and "try again in" in r.get_data(as_text=True)
    assert _login_form(ana, "ana", addr="127.0.0.2").status_code == 302  # ana, elsewhere
    from pipeline.interfaces.review.app import LoginThrottle

    t = LoginThrottle()
    waits = []
    for _ in range(8):
        t.failed("bo", "a", 0.0)
        waits.append(t.wait("bo", "a", 0.0))
    assert waits[:4] == [0, 0, 0, 0] and waits[4:] == [30, 60, 120, 240]
    assert t.wait("bo", "b", 0.0) == 0 and t.wait("ana", "a", 0.0) == 0
    for k in range(20):
        t.failed(f"user{k}", "spray", 0.0)
    assert t.wait("someone", "spray", 0.0) > 0


def test_the_session_cookie_is_secure_when_asked_or_behind_a_trusted_https_proxy(project):
    data, _, _ = project
    make_app(data)  # the accounts
    p = params(data)
    for kwargs, headers, secure in (
            ({}, {}, False),
            ({"secure_cookies": True}, {}, True),
            ({"trusted_proxies": 1}, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.7"}, True),
            ({}, {"X-Forwarded-Proto": "https"}, False)):  # an untrusted header changes nothing
        app = create_app(p, data, testing=True, **kwargs)
        r = app.test_client().get("/login", headers=headers)  # the CSRF token starts a session
        assert r.status_code == 200
        assert ("Secure" in r.headers["Set-Cookie"]) == secure, (kwargs, headers)


@pytest.mark.parametrize("body", [
    {"action": "accept", "expect": 0, "note": ["a", "list"]},
    {"action": "relabel", "expect": 0, "label": {"an": "object"}},
    {"action": "accept", "expect": 1e309},            # Infinity in JSON
    {"action": "accept", "expect": True},
    {"action": ["accept"], "expect": 0},
    {"action": "accept", "expect": 0, "filter_reason": 5},
    {"action": "accept", "expect": 0, "note": "x" * 100_000},
])
def test_every_json_field_is_type_checked_with_a_sentence(project, body):
    data, _, ids = project
    c = login(make_app(data), "ana")
    r = api(c, "/api/decide", {"image_id": ids[0], **body})
    assert r.status_code == 400 and r.get_json()["error"], r.get_data(as_text=True)
    for path, raw in (("/api/decide", "[1, 2]"), ("/api/undo", '"text"'), ("/api/bulk", "[]"),
                      ("/api/decide", '{"image_id": ["x"], "action": "accept"}'),
                      ("/api/undo", '{"image_id": "x", "decision_id": Infinity}')):
        r = c.post(path, data=raw, content_type="application/json", headers={"X-CSRFToken": c.csrf})
        assert r.status_code == 400 and r.get_json()["error"], (path, raw, r.status_code)


def test_control_characters_in_a_note_are_shown_escaped_on_the_page(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    r = api(c, "/api/decide", {"image_id": ids[3], "action": "reject", "reason": "other",
                               "note": "look\x1b[2J here", "expect": 0})
    assert r.status_code == 200, r.get_json()
    page = c.get(f"/image/{ids[3]}").get_data(as_text=True)
    assert "\x1b" not in page and "look\\x1b[2J here" in page
    # the app's own JSON (Markup) is not escaped again: the page's script can read it
    import json

    data = re.search(r'<script[^>]*id="page-data"[^>]*>(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["image_id"] == ids[3]


def test_a_post_without_the_csrf_token_is_refused(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    r = api(c, "/api/decide", {"image_id": ids[0], "action": "accept", "expect": 0}, csrf=False)
    assert r.status_code == 400 and "CSRF" in r.get_json()["error"]
    assert decisions.Decisions(decisions.connect(decisions.review_url(data))).history().empty


def test_unknown_and_path_like_ids_are_404(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    for path in ("/img/../../etc/passwd", "/img/%2e%2e%2fstore", f"/img/{'0' * 64}", "/image/abc",
                 f"/crop/{'f' * 64}", f"/image/{ids[0].upper()}", "/thumb/..%2F..%2Fparams.yaml"):
        assert c.get(path).status_code == 404, path
    assert api(c, "/api/decide", {"image_id": "../x", "action": "accept", "expect": 0}).status_code == 404
    assert c.get(f"/img/{ids[0]}").data == (data / "store" / manifest.read_manifest(
        manifest.manifest_path(data, "crop")).set_index("image_id").at[ids[0], "path"]).read_bytes()


def test_the_queue_groups_by_reason_and_puts_the_most_doubtful_first(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    html = c.get("/").get_data(as_text=True)
    order = re.findall(r'data-image-id="([0-9a-f]{64})"', html)
    # closeness to the threshold 0.5: conflict 0, cert .51 → .01, hand .45 → .05,
    # row 8 (min of hand .1, cert .08) .08, hand .62 → .12, cert .35 → .15, hand .69 → .19, crop .2
    assert order == [ids[6], ids[3], ids[1], ids[8], ids[0], ids[4], ids[2], ids[5]]
    assert ">8</b> left" in html and ">0</b> done" in html
    hands = re.findall(r'data-image-id="([0-9a-f]{64})"', c.get("/?reason=hand").get_data(as_text=True))
    assert hands == [ids[1], ids[8], ids[0], ids[2]]
    page = c.get(f"/image/{ids[8]}?reason=hand").get_data(as_text=True)
    assert f'href="/image/{ids[0]}?reason=hand"' in page and f'href="/image/{ids[1]}?reason=hand"' in page
    assert "javascript:" not in page  # an untrusted product URL is not made a link
    conflict = c.get(f"/image/{ids[6]}").get_data(as_text=True)
    assert "Duplicate cluster (2 photos)" in conflict and f"/thumb/{ids[7]}" in conflict


def test_decide_relabel_and_a_class_that_does_not_exist(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    r = api(c, "/api/decide", {"image_id": ids[6], "action": "relabel", "label": "unobtainium", "expect": 0})
    assert r.status_code == 400 and "not a class" in r.get_json()["error"]
    r = api(c, "/api/decide", {"image_id": ids[6], "action": "relabel", "label": "class02", "expect": 0})
    assert r.status_code == 200 and r.get_json()["next"] == f"/image/{ids[3]}"
    r = api(c, "/api/decide", {"image_id": ids[3], "action": "reject", "expect": 0})
    assert r.status_code == 400 and "needs a reason" in r.get_json()["error"]
    r = api(c, "/api/decide", {"image_id": ids[3], "action": "reject", "reason": "other", "expect": 0})
    assert r.status_code == 400 and "note" in r.get_json()["error"]
    assert api(c, "/api/decide", {"image_id": ids[3], "action": "reject", "reason": "certificate",
                                  "expect": 0}).status_code == 200
    latest = decisions.Decisions(decisions.connect(decisions.review_url(data))).latest().set_index("image_id")
    assert latest.loc[ids[6], ["decision", "label", "reviewer"]].tolist() == ["relabel", "class02", "ana"]
    assert latest.loc[ids[3], ["decision", "reason"]].tolist() == ["reject", "certificate"]
    assert ">6</b> left" in c.get("/").get_data(as_text=True)


def test_the_second_of_two_annotators_is_told_and_nothing_is_overwritten(project):
    data, _, ids = project
    app = make_app(data)
    ana, bo = login(app, "ana"), login(app, "bo")
    assert api(bo, "/api/decide", {"image_id": ids[0], "action": "accept", "expect": 0}).status_code == 200
    r = api(ana, "/api/decide", {"image_id": ids[0], "action": "reject", "reason": "hand", "expect": 0})
    assert r.status_code == 409
    got = r.get_json()
    assert got["current"]["decision"] == "accept" and got["current"]["reviewer"] == "bo"
    hist = decisions.Decisions(decisions.connect(decisions.review_url(data))).history()
    assert hist["decision"].tolist() == ["accept"]


def test_the_database_refuses_two_decisions_from_the_same_state(tmp_path):
    """The unique (image_id, supersedes) index: a race the read-then-write check cannot see."""
    db = decisions.Decisions(decisions.connect(f"sqlite:///{tmp_path}/r.sqlite"))
    a = "a" * 64
    first = db.record(a, "accept", "ana", expect=0)
    # as if a second writer had read the same state
    with db.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(decisions.decisions_table.insert().values(
            image_id=a, decision="reject", reviewer="bo", decided_at=pd.Timestamp.now(tz="UTC"),
            supersedes=0))
    assert db.record(a, "reject", "bo", reason="hand", expect=first) == first + 1


def test_undo_restores_the_state_before_and_keeps_the_history(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    d1 = api(c, "/api/decide", {"image_id": ids[2], "action": "accept",
                                "expect": 0}).get_json()["decision_id"]
    d2 = api(c, "/api/decide", {"image_id": ids[2], "action": "reject", "reason": "hand",
                                "expect": d1}).get_json()["decision_id"]
    db = decisions.Decisions(decisions.connect(decisions.review_url(data)))
    assert api(c, "/api/undo", {"image_id": ids[2], "decision_id": d1}).status_code == 409  # not the latest
    r = api(c, "/api/undo", {"image_id": ids[2], "decision_id": d2})
    assert r.status_code == 200
    assert db.latest().set_index("image_id").at[ids[2], "decision"] == "accept"
    d3 = r.get_json()["decision_id"]
    assert db.history()["decision"].tolist() == ["accept", "reject", "accept"]
    assert db.history()["supersedes"].tolist() == [0, d1, d2]
    # undoing the only decision leaves none in force: the image is back in the queue
    d4 = api(c, "/api/decide", {"image_id": ids[3], "action": "accept",
                                "expect": 0}).get_json()["decision_id"]
    assert ids[3] not in c.get("/").get_data(as_text=True)
    assert api(c, "/api/undo", {"image_id": ids[3], "decision_id": d4}).status_code == 200
    assert ids[3] not in db.latest()["image_id"].tolist()
    assert ids[3] in c.get("/").get_data(as_text=True)
    assert db.current(ids[3])["decision"] == "revoke" and d3 < d4
    bo = login(make_app(data), "bo")
    d5 = api(bo, "/api/decide", {"image_id": ids[1], "action": "accept",
                                 "expect": 0}).get_json()["decision_id"]
    assert api(c, "/api/undo", {"image_id": ids[1], "decision_id": d5}).status_code == 403


def test_another_look_keeps_the_image_first_in_the_queue_with_nothing_in_force(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    assert api(c, "/api/decide", {"image_id": ids[5], "action": "revisit", "expect": 0}).status_code == 200
    order = re.findall(r'data-image-id="([0-9a-f]{64})"', c.get("/").get_data(as_text=True))
    assert order[0] == ids[5]
    assert decisions.Decisions(decisions.connect(decisions.review_url(data))).latest().empty


def test_double_review_needs_two_agreeing_annotators_and_a_lead_resolves_the_rest(project):
    data, _, ids = project
    app = make_app(data, double_review=["hand"])
    ana, bo, lea = login(app, "ana"), login(app, "bo"), login(app, "lea")
    db = decisions.Decisions(decisions.connect(decisions.review_url(data)))
    r = api(ana, "/api/decide", {"image_id": ids[0], "action": "accept", "expect": 0})
    assert r.get_json()["state"] == "voted" and db.history().empty
    assert ids[0] not in ana.get("/").get_data(as_text=True)          # ana waits for a second
    assert "second review" in bo.get("/?reason=hand").get_data(as_text=True)
    r = api(bo, "/api/decide", {"image_id": ids[0], "action": "accept", "expect": 0})
    assert r.get_json()["state"] == "agreed"
    assert db.latest().set_index("image_id").at[ids[0], "reviewer"] == "ana+bo"
    # a disagreement goes to the leads
    api(ana, "/api/decide", {"image_id": ids[1], "action": "accept", "expect": 0})
    r = api(bo, "/api/decide", {"image_id": ids[1], "action": "reject", "reason": "hand", "expect": 0})
    assert r.get_json()["state"] == "disputed" and ids[1] not in db.latest()["image_id"].tolist()
    assert ids[1] not in bo.get("/").get_data(as_text=True)
    assert ids[1] in lea.get("/?reason=disputed").get_data(as_text=True)
    r = api(lea, "/api/decide", {"image_id": ids[1], "action": "reject", "reason": "hand", "expect": 0})
    assert r.get_json()["state"] == "decided"
    assert db.latest().set_index("image_id").at[ids[1], "reviewer"] == "lea"
    # a reason not listed needs one annotator
    assert api(ana, "/api/decide", {"image_id": ids[4], "action": "accept",
                                    "expect": 0}).get_json()["state"] == "decided"
    # a vote can be taken back (undo) until a second annotator answers
    assert api(ana, "/api/decide", {"image_id": ids[2], "action": "accept",
                                    "expect": 0}).get_json()["state"] == "voted"
    assert api(ana, "/api/undo", {"image_id": ids[2], "vote": True}).status_code == 200
    assert api(ana, "/api/undo", {"image_id": ids[2], "vote": True}).status_code == 409
    assert ids[2] in ana.get("/?reason=hand").get_data(as_text=True)
    stats = lea.get("/stats").get_data(as_text=True)
    # two images with two votes: (accept, accept) and (accept, reject): p_o 0.5, p_e 0.5 → kappa 0
    assert "2 image(s) reviewed twice" in stats and 'id="kappa">0.000<' in stats


def test_bulk_needs_a_confirmation_and_reports_what_it_could_not_do(project):
    data, _, ids = project
    app = make_app(data)
    ana, bo = login(app, "ana"), login(app, "bo")
    items = [{"image_id": i, "expect": 0} for i in (ids[0], ids[1], ids[2])]
    assert api(ana, "/api/bulk", {"action": "accept", "items": items}).status_code == 400
    api(bo, "/api/decide", {"image_id": ids[1], "action": "reject", "reason": "hand", "expect": 0})
    r = api(ana, "/api/bulk", {"action": "accept", "items": items, "confirm": True})
    assert r.status_code == 207
    got = r.get_json()
    assert got["done"] == 2 and [f["image_id"] for f in got["failed"]] == [ids[1]]


def test_stats_count_decisions_and_the_audit_csv_holds_the_history(project):
    data, _, ids = project
    c = login(make_app(data), "ana")
    api(c, "/api/decide", {"image_id": ids[0], "action": "accept", "expect": 0})
    api(c, "/api/decide", {"image_id": ids[1], "action": "reject", "reason": "other",
                           "note": "=HYPERLINK(\"x\")", "expect": 0})
    stats = c.get("/stats").get_data(as_text=True)
    assert "<b>6</b> left" in stats and "2 decisions in all" in stats
    text = c.get("/decisions.csv").get_data(as_text=True)
    lines = text.strip().splitlines()
    assert lines[0] == "id,image_id,decision,label,reviewer,decided_at,reason,note,supersedes"
    assert len(lines) == 3 and "'=HYPERLINK" in text  # a formula is not run by a spreadsheet
    buf = io.StringIO()
    assert export_csv(decisions.Decisions(decisions.connect(decisions.review_url(data))), buf) == 2


def test_cohen_kappa_known_answers():
    assert cohen_kappa(list("yynn"), list("ynnn")) == pytest.approx(0.5)
    assert cohen_kappa(list("abab"), list("abab")) == 1.0
    assert cohen_kappa(list("ab"), list("ba")) == pytest.approx(-1.0)
    assert cohen_kappa([], []) is None


def test_an_old_decisions_table_gains_the_column_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path}/old.sqlite"
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.text("create table decisions (id integer primary key autoincrement, image_id "
                          "varchar(64) not null, decision varchar(16) not null, label varchar(128), "
                          "reviewer varchar(128) not null, decided_at datetime not null, reason "
                          "varchar(128), note text)"))
        c.execute(sa.text(f"insert into decisions (image_id, decision, reviewer, decided_at) values "
                          f"('{'b' * 64}', 'accept', 'ana', '2026-01-01 00:00:00')"))
    db = decisions.Decisions(decisions.connect(url))
    assert db.latest()["decision"].tolist() == ["accept"]
    assert db.record("b" * 64, "reject", "bo", reason="hand", expect=1) == 2


@pytest.fixture
def pg_url():
    """A new PostgreSQL database on 127.0.0.1 (dropped afterwards); skipped without a server."""
    psycopg = pytest.importorskip("psycopg")
    import uuid

    name = f"gemcurate_review_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", connect_timeout=2,
                                autocommit=True)
    except Exception:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    admin.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg://postgres@127.0.0.1/{name}"
    sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1/{name}").dispose()
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.mark.postgres
def test_the_app_on_postgresql_keeps_the_version_check_and_its_accounts_there(project, pg_url):
    data, _, ids = project
    p = params(data, data={"review_db": pg_url})
    app = create_app(p, data, testing=True)
    db = AppDB(app_url(pg_url, data))
    for name in ("ana", "bo"):
        db.add_user(name, "annotator", PASSWORD)
    assert not (data / "state" / "review_app.sqlite").exists()  # accounts live in PostgreSQL too
    ana, bo = login(app, "ana"), login(app, "bo")
    assert api(bo, "/api/decide", {"image_id": ids[0], "action": "accept", "expect": 0}).status_code == 200
    r = api(ana, "/api/decide", {"image_id": ids[0], "action": "reject", "reason": "hand", "expect": 0})
    assert r.status_code == 409 and r.get_json()["current"]["reviewer"] == "bo"
    dec = decisions.Decisions(decisions.connect(pg_url))
    with dec.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(decisions.decisions_table.insert().values(
            image_id=ids[0], decision="reject", reviewer="ana", decided_at=pd.Timestamp.now(tz="UTC"),
            supersedes=0))
    assert dec.latest()["reviewer"].tolist() == ["bo"]
    dec.engine.dispose()
    db.engine.dispose()


@pytest.fixture
def label_project(tmp_path):
    """Three label issues with known qualities and the probe's top three; one also scored
    by the trained model (evaluate's review_top.parquet)."""
    data = tmp_path / "data"
    df = crop_manifest(data, classes=3, products=3, per_product=1, write_images=False)
    store = BlobStore(data / "store")
    for k in range(len(df)):
        iid, rel = store.put(photo_bytes(k), "jpg")
        df.loc[k, ["image_id", "path", "dup_cluster", "pixel_sha256"]] = [iid, rel, iid, iid]
        df.at[k, "crop_path"] = f"{iid[:2]}/{iid}.png"
    labels = sorted(df["label"].unique())
    for k, q in ((0, 0.30), (1, 0.05), (2, 0.12)):
        other = next(c for c in labels if c != df.at[k, "label"])
        df.loc[k, ["needs_review", "review_reason", "label_issue", "label_quality"]] = [
            True, "label_issue", True, q]
        df.loc[k, ["label_suggestion", "label_suggestion_p"]] = [other, 0.9 - q]
        df.loc[k, "label_top"] = (f'[["{other}", {0.9 - q}], ["{df.at[k, "label"]}", {q}], '
                                  f'["{labels[-1]}", 0.01]]')
    out = manifest.conform(df, "crop")
    manifest.write_manifest(out, manifest.manifest_path(data, "crop"))
    trained_for = out.at[2, "image_id"]
    (data / "evaluate").mkdir(parents=True)
    pd.DataFrame({"image_id": [trained_for], "top": [f'[["{labels[-1]}", 0.7], ["{labels[0]}", 0.2]]']}
                 ).to_parquet(data / "evaluate" / "review_top.parquet")
    return data, out, labels


def test_label_issues_surest_first_with_the_models_classes_as_keys_and_counted_in_stats(label_project):
    data, df, labels = label_project
    c = login(make_app(data), "ana")
    page = c.get("/?reason=label_issue").get_data(as_text=True)
    order = [df.at[k, "image_id"] for k in (1, 2, 0)]  # label quality 0.05, 0.12, 0.30
    pos = [page.index(f"/image/{i}") for i in order]
    assert pos == sorted(pos), "the surest mistakes come first"
    surest = df.iloc[1]
    html = c.get(f"/image/{surest['image_id']}").get_data(as_text=True)
    assert 'id="model-top"' in html and "out-of-fold probe" in html and "0.85" in html
    keys = re.findall(r'data-action="relabel" data-label="([^"]+)"', html)
    assert keys[0] == surest["label_suggestion"] and surest["label"] not in keys[:1]
    # evaluate's trained model wins where it scored the image
    html = c.get(f"/image/{df.at[2, 'image_id']}").get_data(as_text=True)
    assert "trained model" in html
    assert re.findall(r'data-action="relabel" data-label="([^"]+)"', html)[0] == labels[-1]
    # one confirmed (relabelled to the suggestion), one dismissed (the store's label kept)
    r = api(c, "/api/decide", {"image_id": surest["image_id"], "action": "relabel",
                               "label": surest["label_suggestion"], "expect": 0})
    assert r.status_code == 200, r.get_json()
    assert api(c, "/api/decide", {"image_id": df.at[0, "image_id"], "action": "accept",
                                  "expect": 0}).status_code == 200
    stats = c.get("/stats").get_data(as_text=True)
    block = stats[stats.index('id="label-issues"'):]
    assert re.search(r"<b>1</b> were\s+confirmed", block) and re.search(r"<b>1</b> dismissed", block)
    assert "<b>0.50</b>" in block
    hist = decisions.Decisions(decisions.connect(decisions.db_url(None, data))).history()
    assert set(hist["reason"]) == {"label_issue"}  # what each decision answered
