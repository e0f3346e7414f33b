"""moto's S3 server on a free loopback port, with buckets created, for an in-memory artifact store.

`moto_s3(buckets=["mlflow"])` runs `moto_server -H 127.0.0.1 -p PORT`, waits until it answers,
creates the buckets and yields a `MotoS3` with the endpoint URL and the (dummy) credentials that
clients such as the MLflow server need in their environment (`MotoS3.client_env()`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.procs import LOOPBACK, ManagedProcess, env_with_venv, free_port, http_server, loopback_url
from services.common import contract

# moto accepts any credentials unless INITIAL_NO_AUTH_ACTION_COUNT is set.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    port: int
    process: ManagedProcess

    def client_env(self) -> dict[str, str]:
        """Environment for an S3 client of this server (boto3, MLflow's S3 artifact repository)."""
        return {
            **DUMMY_CREDENTIALS,
            contract.MLFLOW_S3_ENDPOINT_URL.name: self.endpoint_url,
            contract.AWS_ENDPOINT_URL_S3.name: self.endpoint_url,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


@contextlib.contextmanager
def moto_s3(
    buckets: Sequence[str] = ("mlflow",),
    port: int | None = None,
    log_path: str | Path | None = None,
    start_timeout: float = 60.0,
) -> Iterator[MotoS3]:
    """Run moto's server on `port` (a free one by default) and create `buckets`."""
    port = port or free_port()
    process = http_server(
        "moto_server",
        ["moto_server", "-H", LOOPBACK, "-p", str(port)],
        port=port,
        ready_path="/moto-api/",
        env=env_with_venv(DUMMY_CREDENTIALS),
        log_path=log_path,
        start_timeout=start_timeout,
    )
    with process:
        server = MotoS3(endpoint_url=loopback_url(port), port=port, process=process)
        for bucket in buckets:
            server.create_bucket(bucket)
        yield server
