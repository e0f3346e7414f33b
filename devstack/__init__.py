"""Local, throw-away instances of the platform's servers for tests, the benchmark and `make demo`.

Every launcher is a context manager that starts its server on a free loopback port in its own process
group, waits (bounded) until it answers, shows the server's log when it does not, and stops the whole
process group on exit:

- `devstack.procs`: `free_port()`, `ManagedProcess`, `DevstackError` (port taken, binary missing...).
- `devstack.postgres.fresh_database()`: a new PostgreSQL database, dropped afterwards.
- `devstack.moto.moto_s3()`: moto's S3 server with buckets created.
- `devstack.mlflow_server.mlflow_server()`: `mlflow server` with a PostgreSQL/sqlite backend store and
  proxied artifacts in S3 (moto) or a local folder.
- `devstack.serving.serving_service()`: the serving service, run with the Dockerfile's command.
- `devstack.models.train_and_register()`: a registered iris LogisticRegression version, alias set.
- `devstack.stack.mlflow_stack()`: PostgreSQL database + moto S3 + MLflow server in one block.
"""

from devstack.procs import DevstackError, ManagedProcess, free_port

__all__ = ["DevstackError", "ManagedProcess", "free_port"]
