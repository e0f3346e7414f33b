"""Runtime helpers for the MLflow server (run in the cluster, not imported by the program)."""
