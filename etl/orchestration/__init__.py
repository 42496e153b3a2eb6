"""Run the sync engine one stage per Airflow task.

`tasks` holds the plain-Python functions the `erpoa_master_data` DAG calls (one
call per task body); `connections` builds the project's connections from Airflow
Connections; `errors` maps terminal errors onto `AirflowFailException` (no
retry) and lets transient ones through for Airflow's retries; `locking` holds an
entity's lock across tasks and worker processes.

Nothing here is imported when a DAG file is parsed.
"""
