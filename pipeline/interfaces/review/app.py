"""The review web app: Flask, server-rendered Jinja pages, a little plain JS for the keys.

Every page needs a login; every state change is a POST with a CSRF token (Flask-WTF);
session cookies are HttpOnly and SameSite=Lax; images are served by ``image_id`` only
(the file comes from the manifest row of that id, checked against it); decisions go
through :class:`pipeline.core.decisions.Decisions` (the table the CLI and the pipeline use)
with a version check, so a second annotator deciding the same image is told, not
overwritten. A strict Content-Security-Policy allows only this app's own script.

Example:
    $ gemcurate review add-user ana --role annotator
    $ gemcurate review serve --port 8765
"""

from __future__ import annotations

from pathlib import Path

import flask
from flask import jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import Markup

from pipeline.core.config import Params
from pipeline.core.text import printable
from pipeline.interfaces.review import accounts
from pipeline.interfaces.review.queue import ReviewData
from pipeline.interfaces.review.views import (  # noqa: F401 - re-exported for their users
    Deps,
    LoginThrottle,
    User,
    bp,
    export_csv,
    safe_next,
)

HERE = Path(__file__).parent


class _Sessions(SecureCookieSessionInterface):
    """Session cookies marked ``Secure`` when configured, or when the request came over
    HTTPS (behind a trusted proxy that says so in ``X-Forwarded-Proto``)."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (
            flask.has_request_context() and request.is_secure)


# long: the app's wiring only (config, proxy, CSRF, login, headers, escaping), a few lines each; the
# views are in views.py
def create_app(params: Params, data_dir: str | Path, root: Path | None = None,
               testing: bool = False, secure_cookies: bool = False,
               trusted_proxies: int = 0) -> flask.Flask:
    """The app for one project's data folder.

    Args:
        params: The project's params.
        data_dir: Its data folder.
        root: The project root (git), for "decisions not yet in the latest version".
        testing: Flask's testing mode (CSRF stays on: the tests check it).
        secure_cookies: Mark the session cookie ``Secure`` always (serve behind TLS).
        trusted_proxies: How many reverse proxies in front of the app set
            ``X-Forwarded-For``/``-Proto``/``-Host`` (0: trust none). With one, the client's
            address (login throttling) and scheme (``Secure`` cookies on HTTPS) come from
            the proxy's headers; never set it for an app reachable without the proxy.
    """
    data_dir = Path(data_dir)
    app_db = accounts.AppDB(accounts.app_url(params.data.review_db, data_dir))
    data = ReviewData(params, data_dir, app_db)
    app = flask.Flask("gemcurate.review", template_folder=str(HERE / "templates"),
                      static_folder=str(HERE / "static"))
    app.config.update(SECRET_KEY=app_db.secret(), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", REMEMBER_COOKIE_HTTPONLY=True,
                      REMEMBER_COOKIE_SAMESITE="Lax", WTF_CSRF_TIME_LIMIT=None, TESTING=testing,
                      MAX_CONTENT_LENGTH=256 * 1024)
    app.config["SESSION_COOKIE_SECURE"] = secure_cookies
    app.config["REMEMBER_COOKIE_SECURE"] = secure_cookies
    app.session_interface = _Sessions()
    if trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies,
                                x_host=trusted_proxies)
    app.extensions["gemcurate"] = Deps(params, data_dir, data, app_db, root, LoginThrottle())
    CSRFProtect(app)  # every POST (forms and the JSON API) carries the token
    login = LoginManager(app)
    login.login_view = "review.login_page"
    login.session_protection = "strong"

    @login.user_loader
    def load_user(uid: str) -> User | None:
        name, _, token = str(uid).partition("|")
        u = app_db.user(name)
        if not u or not token or token != app_db.session_token(name):
            return None  # logged out, or the password changed, since this cookie was made
        return User(u["name"], u["role"], token)

    @app.after_request
    def headers(resp: flask.Response) -> flask.Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):
        if request.path.startswith("/api/"):
            return jsonify(error=f"CSRF check failed: {e.description}"), 400
        return render_template("error.html", message=e.description), 400

    # every value a page shows passes here before HTML escaping: labels, notes and reasons
    # come from stores, CSVs and forms, so their control characters are shown, not sent
    # (Markup — the tojson page data, |safe — is the app's own and passes as it is: made a
    # plain str it would be escaped again, and the page's JSON would not parse)
    app.jinja_env.finalize = lambda v: (printable(v, keep_newlines=True)
                                        if isinstance(v, str) and not isinstance(v, Markup) else v)

    @app.template_filter("safe_url")
    def safe_url(u: object) -> str | None:
        return u if isinstance(u, str) and u.startswith(("http://", "https://")) else None

    app.register_blueprint(bp)
    return app
