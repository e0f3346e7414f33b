"""Where the artifact store's S3 API is, and how each consumer is told: AWS itself, or an S3-compatible store
(MinIO, Ceph RGW: `artifacts.mode: s3Compatible`) at its own endpoint, verified with its own CA.

`ObjectStore` holds what the stack says (endpoint, region, the CA's path inside the consumer's container); the
functions give each consumer its configuration in its own terms, so the Pulumi program and the tests build it the
same way:

- `client_env(store)`: MLflow's and boto3's variables (the MLflow server's proxied artifacts, training pods, any
  boto3 client): the endpoint under both names, the CA bundle, the region. No credentials: each consumer's key
  comes from its own Secret (`key_env` gives the same variable names for a key in hand).
- `proxied_client_env()`: for MLflow's clients (serving, DAGs, training pods) of a server with proxied artifacts:
  MLflow 3.17's clients otherwise download straight from the store by presigned URLs, which needs the store's
  endpoint reachable from them and its CA trusted by `requests`; with it they need the tracking URI only.
- `airflow_connection_extra(store)` and `airflow_connection(store, key_id, secret)`: Airflow's `aws` connection
  (remote task logs): `endpoint_url`, `region_name`, `verify` (the CA path) in its extra.

Path-style addressing needs no setting: botocore uses it for every custom endpoint unless told `virtual`.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

from services.common import contract

DEFAULT_REGION = "us-east-1"  # what S3-compatible stores answer to when they have no region of their own


class ObjectStoreError(ValueError):
    """An endpoint, region or CA path that no S3 client could use."""


@dataclass(frozen=True)
class ObjectStore:
    """The S3 API of the artifact store. `endpoint_url` None = AWS; `ca_bundle`: path of a PEM CA file (in the
    consumer's container) that signed the endpoint's certificate, None = the system's CAs."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        if not self.region or any(c.isspace() for c in self.region):
            raise ObjectStoreError(f"region must be a non-empty word, got {self.region!r}")
        if self.endpoint_url is not None:
            parts = urllib.parse.urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ObjectStoreError(f"endpoint must be an http(s) URL with a host, got {self.endpoint_url!r}")
            if parts.path.strip("/") or parts.query or parts.fragment:
                raise ObjectStoreError(
                    f"endpoint must be the store's root URL (the bucket is not part of it), got {self.endpoint_url!r}"
                )
        if self.ca_bundle is not None:
            if not self.ca_bundle.startswith("/"):
                raise ObjectStoreError(f"CA bundle must be an absolute path, got {self.ca_bundle!r}")
            if self.endpoint_url is None or not self.endpoint_url.startswith("https://"):
                raise ObjectStoreError("a CA bundle is only used with an https endpoint")

    @property
    def is_aws(self) -> bool:
        return self.endpoint_url is None

    @property
    def endpoint(self) -> str | None:
        """The endpoint without a trailing slash (as boto3 and MLflow join paths to it)."""
        return self.endpoint_url.rstrip("/") if self.endpoint_url else None


def client_env(store: ObjectStore) -> dict[str, str]:
    """MLflow's and boto3's variables for `store` (no credentials): what a ConfigMap or a pod's env holds."""
    env = {contract.AWS_DEFAULT_REGION.name: store.region}
    if store.endpoint:
        env[contract.MLFLOW_S3_ENDPOINT_URL.name] = store.endpoint
        env[contract.AWS_ENDPOINT_URL_S3.name] = store.endpoint
    if store.ca_bundle:
        env[contract.AWS_CA_BUNDLE.name] = store.ca_bundle
    return env


def key_env(key_id: str, secret: str) -> dict[str, str]:
    """One consumer's key in boto3's variable names (the keys of its credentials Secret)."""
    return {contract.AWS_ACCESS_KEY_ID.name: key_id, contract.AWS_SECRET_ACCESS_KEY.name: secret}


def proxied_client_env() -> dict[str, str]:
    """MLflow client variables that keep every artifact download going through the tracking server."""
    return {contract.MLFLOW_PROXY_MULTIPART_DOWNLOAD.name: "false"}


def airflow_connection_extra(store: ObjectStore) -> dict[str, str]:
    """The `extra` of Airflow's `aws` connection for `store` (read by the Amazon provider's hooks)."""
    extra = {"region_name": store.region}
    if store.endpoint:
        extra["endpoint_url"] = store.endpoint
    if store.ca_bundle:
        extra["verify"] = store.ca_bundle
    return extra


def airflow_connection(store: ObjectStore, key_id: str, secret: str) -> str:
    """An Airflow `aws` connection in Airflow's JSON form (the value of AIRFLOW_CONN_<ID>), key included."""
    return json.dumps(
        {"conn_type": "aws", "login": key_id, "password": secret, "extra": airflow_connection_extra(store)},
        sort_keys=True,
    )
