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
- `devstack.models.train_and_register()`: a registered version of an example model, trained as the DAGs train
  (the training runner, `mlops_tasks.runner`), alias set.
- `devstack.catalog`: the model catalog of local runs (the two examples) and its JSON with local serving URLs.
- `devstack.stack.mlflow_stack()`: PostgreSQL database + moto S3 + MLflow server in one block.
- `devstack.dag_runs`: the environment of an `airflow` command on this repository's DAGs and the runs it
  recorded.

Importing `devstack` puts the DAG folder on `sys.path`, as Airflow does, so that the DAGs' helper package
`mlops_tasks` (runner, registry, serving client) is the one devstack uses: one copy of that code.
"""

import sys
from pathlib import Path

from devstack.procs import DevstackError, ManagedProcess, free_port

REPO = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO / "dags"
if str(DAGS_FOLDER) not in sys.path:
    sys.path.append(str(DAGS_FOLDER))

__all__ = ["DAGS_FOLDER", "REPO", "DevstackError", "ManagedProcess", "free_port"]
