"""Pieces shared by the Pulumi program, the serving service and the Airflow DAGs."""
