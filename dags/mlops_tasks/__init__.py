"""Logic of the MLOps DAGs, kept out of the DAG files so that they stay light to parse and the logic
can be unit-tested without Airflow.

Every module here imports only the standard library at module level; MLflow, scikit-learn and httpx
are imported inside the functions that need them (Airflow parses the DAG files often).
"""
