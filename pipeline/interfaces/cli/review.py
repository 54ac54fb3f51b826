"""``gemcurate review serve|add-user``: the annotators' web app."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.paths import find_project_root
from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    rv = sub.add_parser("review", help="the annotators' review app: serve, add-user")
    rsub = rv.add_subparsers(dest="review_cmd", required=True)
    rs = rsub.add_parser("serve", help="serve the review queue over HTTP (login required)")
    rs.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve a team (put TLS in front)")
    rs.add_argument("--secure-cookies", action="store_true",
                    help="mark the session cookie Secure (the app is reached over HTTPS only)")
    rs.add_argument("--trusted-proxies", type=int, default=0, metavar="N",
                    help="N reverse proxies in front set X-Forwarded-For/-Proto: the client "
                         "address and HTTPS (Secure cookies) come from them (default 0: none)")
    rs.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    rs.add_argument("--port-file", help="write the bound port here once listening")
    project_options(rs)
    rs.set_defaults(func=cmd_review)
    ru = rsub.add_parser("add-user", help="create an account (the password is asked, or read from stdin)")
    ru.add_argument("name")
    ru.add_argument("--role", choices=["annotator", "lead"], default="annotator")
    ru.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    ru.add_argument("--reset-password", action="store_true", help="the account exists: set a new password")
    project_options(ru)
    ru.set_defaults(func=cmd_review)


def cmd_review(a: argparse.Namespace) -> int:
    params = project_params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    data_dir = Path(params.data.data_dir).absolute()
    if a.review_cmd == "add-user":
        import getpass

        from pipeline.interfaces.review.accounts import AppDB, app_url

        if a.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {a.name}: ")
            if getpass.getpass("again: ") != password:
                raise UserError("the passwords differ; nothing changed")
        AppDB(app_url(params.data.review_db, data_dir)).add_user(a.name, a.role, password,
                                                                 replace=a.reset_password)
        print(f"{'updated' if a.reset_password else 'added'} {a.role} {a.name}")
        return 0
    from pipeline.interfaces.review import serve

    serve(params, data_dir, a.host, a.port, root=find_project_root(), port_file=a.port_file,
          secure_cookies=a.secure_cookies, trusted_proxies=a.trusted_proxies)
    return 0
