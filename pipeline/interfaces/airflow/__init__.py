"""Airflow glue: ``orchestration`` (projects, pools, commands, exit code → outcome, asset
events; tested without Airflow), ``notify`` (alerts) and ``local`` (``gemcurate airflow``).
"""
