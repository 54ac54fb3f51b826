"""Failure alerts of the gemcurate DAGs, as an Airflow notifier.

:class:`AlertNotifier` is what ``on_failure_callback`` gets: it logs the failure, appends one
JSON line to ``<project>/data/alerts.jsonl`` (what an on-call person or a test reads: which
DAG, task, run, try, and why) and, when ``GEMCURATE_ALERT_WEBHOOK`` names a URL, POSTs the
same JSON there (Slack/Teams/Mattermost incoming webhooks take it). Airflow's own notifiers
(``SmtpNotifier`` of the smtp provider, Slack's) can be listed beside it.

Example:
    >>> notifier = AlertNotifier(project_root="/srv/gems")   # doctest: +SKIP
    >>> # @dag(..., on_failure_callback=[notifier], default_args={"on_failure_callback": [notifier]})
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.request
from pathlib import Path

from airflow.sdk import BaseNotifier

logger = logging.getLogger(__name__)

WEBHOOK_ENV = "GEMCURATE_ALERT_WEBHOOK"


def alert_record(context: dict) -> dict:
    """What is known of a failure from an Airflow callback context, as plain JSON."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "reason": str(exc)[-2000:] if exc else context.get("reason"),
    }


class AlertNotifier(BaseNotifier):
    """Log, append to ``data/alerts.jsonl`` and optionally POST to a webhook."""

    template_fields = ()

    def __init__(self, project_root: str, data_dir: str = "data", webhook: str | None = None):
        super().__init__()
        self.project_root = str(project_root)
        self.data_dir = data_dir
        self.webhook = webhook

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Nothing to render (and a DAG-level callback may get a DAG with no template env)."""

    def notify(self, context: dict) -> None:
        rec = alert_record(context)
        logger.error("gemcurate alert: %s.%s run %s failed: %s", rec["dag_id"], rec["task_id"],
                     rec["run_id"], rec["reason"])
        send(rec, self.project_root, self.data_dir, self.webhook)


def warn(context: dict, reason: str, project_root: str, data_dir: str = "data",
         webhook: str | None = None) -> dict:
    """An alert for a task that succeeded with something a person should know (dead links).

    The same record as a failure's, with ``"level": "warning"`` and ``reason``.
    """
    rec = {**alert_record(context), "reason": reason, "level": "warning"}
    logger.warning("gemcurate warning: %s.%s run %s: %s", rec["dag_id"], rec["task_id"],
                   rec["run_id"], reason)
    send(rec, project_root, data_dir, webhook)
    return rec


def send(rec: dict, project_root: str, data_dir: str = "data", webhook: str | None = None) -> None:
    """Append ``rec`` to ``data/alerts.jsonl`` and POST it to the webhook, if one is set."""
    rec.setdefault("level", "error")
    path = Path(project_root) / data_dir / "alerts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:  # O_APPEND: one whole line per alert
        f.write(json.dumps(rec) + "\n")
    url = webhook or os.environ.get(WEBHOOK_ENV)
    if url:
        req = urllib.request.Request(url, data=json.dumps({"text": _text(rec), **rec}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except OSError as exc:  # an alert that cannot be sent must not hide the failure
            logger.warning("alert webhook %s: %s", url, exc)


def _text(rec: dict) -> str:
    what = "warns" if rec.get("level") == "warning" else "failed"
    return f"gemcurate: {rec['dag_id']}.{rec['task_id']} {what} ({rec['run_id']}): {rec['reason']}"
