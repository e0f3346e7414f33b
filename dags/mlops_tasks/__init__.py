"""Logic of the MLOps DAGs, kept out of the DAG file so that it stays light to parse and the logic can be
unit-tested without Airflow.

No module here imports MLflow, scikit-learn, pandas or httpx at module level: they are imported inside
the functions that need them (Airflow parses the DAG files often). `pipelines` (the DAG factory),
`dag_tasks` (task factories) and `errors` import the Task SDK; `runner` (the training runner), `endpoints`,
`sources`, `gate` and `registry` import no Airflow at all: devstack and the tests call them too.
"""
