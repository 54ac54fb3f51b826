"""The annotators' review app: ``gemcurate review serve`` (see ``app.py``), its accounts and
double-review votes (``accounts.py``) and the queue over the latest manifest (``queue.py``).

Decisions are written only through :mod:`pipeline.core.decisions`, the table the CLI
writes and every curation run applies; a rerun of the pipeline puts them in the next
dataset version.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

logger = logging.getLogger(__name__)


def serve(params, data_dir: str | Path, host: str = "127.0.0.1", port: int = 8765,
          root: Path | None = None, port_file: str | Path | None = None, threads: int = 8,
          secure_cookies: bool = False, trusted_proxies: int = 0) -> None:
    """Serve the app with waitress (a production WSGI server) until interrupted.

    Loopback only unless ``host`` says otherwise; see :func:`create_app` for
    ``secure_cookies`` and ``trusted_proxies``.
    """
    from waitress.server import create_server

    from pipeline.interfaces.review.app import create_app

    app = create_app(params, data_dir, root, secure_cookies=secure_cookies,
                     trusted_proxies=trusted_proxies)
    sock = socket.create_server((host, port))
    server = create_server(app, sockets=[sock], threads=threads, ident="gemcurate-review")
    bound = sock.getsockname()[1]
    if port_file:
        from pipeline.core.atomic import write_text

        write_text(Path(port_file), str(bound))
    print(f"gemcurate review: http://{host}:{bound}/ (data {data_dir}); Ctrl-C stops", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
