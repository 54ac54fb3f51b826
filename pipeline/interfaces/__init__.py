"""How people and schedulers drive gemcurate: ``cli/`` (the ``gemcurate`` command), ``review/``
(the annotators' web app), ``airflow/`` (what the DAGs decide, alerts, the embedded Airflow)
and ``demo`` (the main job on the bundled store).

May import anything in ``pipeline``; nothing outside this folder imports it.
"""
