"""Logic of the MLOps DAGs, kept out of the DAG files so that they stay light to parse and the logic
can be unit-tested without Airflow.

No module here imports MLflow, scikit-learn, pandas or httpx at module level: they are imported inside
the functions that need them (Airflow parses the DAG files often). `dag_tasks` (task factories) and
`errors` import the Task SDK; `training` imports no Airflow at all: it is plain training code that
devstack calls too.
"""
