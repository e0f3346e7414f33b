"""PostgreSQL database + moto S3 + MLflow server, composed: the registry the tests and demo use.

`with mlflow_stack() as stack:` yields `stack.tracking_uri` (clients need nothing else: artifacts are
proxied by the server into `s3://<bucket>/<prefix>` on moto), `stack.s3` and `stack.database_url`.
Everything is torn down in reverse order on exit (server stopped, database dropped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.mlflow_server import MlflowServer, mlflow_server
from devstack.moto import MotoS3, moto_s3
from devstack.postgres import PostgresServer, fresh_database


@dataclass(frozen=True)
class MlflowStack:
    tracking_uri: str
    database_url: str
    artifacts_destination: str
    s3: MotoS3
    server: MlflowServer


@contextlib.contextmanager
def mlflow_stack(
    *,
    bucket: str = "mlflow",
    prefix: str = "artifacts",
    db_prefix: str = "mlflow",
    postgres: PostgresServer | None = None,
    log_dir: str | Path | None = None,
    start_timeout: float = 180.0,
) -> Iterator[MlflowStack]:
    logs = Path(log_dir) if log_dir is not None else None
    with (
        fresh_database(db_prefix, postgres) as database_url,
        moto_s3([bucket], log_path=logs / "moto.log" if logs else None) as s3,
        mlflow_server(
            database_url,
            f"s3://{bucket}/{prefix}",
            s3_env=s3.client_env(),
            log_path=logs / "mlflow.log" if logs else None,
            start_timeout=start_timeout,
        ) as server,
    ):
        yield MlflowStack(
            tracking_uri=server.tracking_uri,
            database_url=database_url,
            artifacts_destination=f"s3://{bucket}/{prefix}",
            s3=s3,
            server=server,
        )
