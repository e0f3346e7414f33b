"""moto's S3 server on a free loopback port, with buckets created, for an in-memory artifact store.

`moto_s3(buckets=["mlflow"])` runs `moto_server -H 127.0.0.1 -p PORT`, waits until it answers,
creates the buckets and yields a `MotoS3` with the endpoint URL and the (dummy) credentials that
clients such as the MLflow server need in their environment (`MotoS3.client_env()`, built by
services.common.object_store as the program builds it). With `tls=TlsFiles(cert, key, ca)` it serves https with
that certificate, and its clients verify it with that CA (an S3-compatible store with a private CA).
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.procs import LOOPBACK, ManagedProcess, env_with_venv, free_port
from services.common import object_store
from services.common.object_store import ObjectStore

# moto accepts any credentials unless INITIAL_NO_AUTH_ACTION_COUNT is set.
DUMMY_KEY = ("testing", "testing")
DUMMY_REGION = "us-east-1"
DUMMY_CREDENTIALS = {**object_store.key_env(*DUMMY_KEY), **object_store.client_env(ObjectStore(region=DUMMY_REGION))}


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server: its certificate (chain), its key and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    port: int
    process: ManagedProcess
    ca_bundle: str | None = None  # the CA file its clients verify it with (https only)

    def store(self) -> ObjectStore:
        """This server as an S3-compatible store (its endpoint, region and CA)."""
        return ObjectStore(endpoint_url=self.endpoint_url, region=DUMMY_REGION, ca_bundle=self.ca_bundle)

    def client_env(self) -> dict[str, str]:
        """Environment for an S3 client of this server (boto3, MLflow's S3 artifact repository)."""
        return {**object_store.client_env(self.store()), **object_store.key_env(*DUMMY_KEY)}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=DUMMY_KEY[0],
            aws_secret_access_key=DUMMY_KEY[1],
            region_name=DUMMY_REGION,
            verify=self.ca_bundle,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


@contextlib.contextmanager
def moto_s3(
    buckets: Sequence[str] = ("mlflow",),
    port: int | None = None,
    log_path: str | Path | None = None,
    start_timeout: float = 60.0,
    tls: TlsFiles | None = None,
) -> Iterator[MotoS3]:
    """Run moto's server on `port` (a free one by default) and create `buckets`; https with `tls`."""
    port = port or free_port()
    argv = ["moto_server", "-H", LOOPBACK, "-p", str(port)]
    if tls is not None:
        argv += ["--ssl-cert", str(tls.cert), "--ssl-key", str(tls.key)]
    endpoint = f"{'https' if tls else 'http'}://{LOOPBACK}:{port}"
    process = ManagedProcess(
        "moto_server",
        argv,
        env=env_with_venv(DUMMY_CREDENTIALS),
        log_path=log_path,
        ready=_answers(f"{endpoint}/moto-api/", tls.ca if tls else None),
        start_timeout=start_timeout,
        ports=(port,),
    )
    with process:
        server = MotoS3(endpoint_url=endpoint, port=port, process=process, ca_bundle=str(tls.ca) if tls else None)
        for bucket in buckets:
            server.create_bucket(bucket)
        yield server


def _answers(url: str, ca: Path | None) -> Callable[[], bool]:
    """Whether GET `url` answers 2xx (over TLS verified with `ca`, when given)."""
    context = ssl.create_default_context(cafile=str(ca)) if ca else None

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2.0, context=context) as response:  # noqa: S310 - loopback URL
                return 200 <= int(response.status) < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return ready
