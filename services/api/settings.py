"""Settings of the platform API, read once from the contract's environment variables.

Required: the database (`MLOPS_DATABASE_HOST`, `MLOPS_API_DATABASE_NAME`, `MLOPS_API_DATABASE_USER`; the password
when the server asks for one), the admin token, Airflow's URL and user, MLflow's URL and the model catalog's path.
Credentials are read from files where `<NAME>_FILE` names one (the cluster's way; the plain variables serve local
use); the database role and password are read again for every new connection, so a rotation needs no restart.
MLflow's user and password come from MLflow's own variables or its credentials file ($HOME/.mlflow/credentials).
Invalid settings stop the process at start with a message naming the variable.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from psycopg.conninfo import make_conninfo

from services.api.limits import TokenSettings
from services.common import api_rules, contract
from services.common.env_settings import SettingsError, mlflow_credentials, number, required, value

__all__ = ["MIN_ADMIN_TOKEN", "SSLMODES", "Settings", "SettingsError", "markdown_table"]

MIN_ADMIN_TOKEN = 24
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class Settings:
    database_host: str
    database_name: str
    database_user: str
    database_password: str | None = field(repr=False)
    admin_token: str = field(repr=False)
    airflow_url: str
    airflow_username: str
    airflow_password: str = field(repr=False)
    tracking_uri: str
    catalog_path: str
    mlflow_username: str | None = None
    mlflow_password: str | None = field(default=None, repr=False)
    database_port: int = 5432
    database_sslmode: str = "prefer"
    database_sslrootcert: str | None = None  # the server's CA file (verify-ca, verify-full); None = libpq's default
    host: str = "0.0.0.0"
    port: int = contract.API_PORT
    reconcile_seconds: float = api_rules.RECONCILE_SECONDS.default
    events_poll_seconds: float = api_rules.EVENTS_POLL_SECONDS.default
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    tokens: TokenSettings = field(default_factory=lambda: TokenSettings())
    admin_token_previous: str | None = field(default=None, repr=False)  # accepted too during a rotation

    @classmethod
    def from_env(cls) -> Settings:
        admin = required(contract.API_ADMIN_TOKEN)
        if len(admin) < MIN_ADMIN_TOKEN:
            raise SettingsError(f"{contract.API_ADMIN_TOKEN.name} must be at least {MIN_ADMIN_TOKEN} characters")
        sslmode = contract.API_DATABASE_SSLMODE.get("prefer") or "prefer"
        if sslmode not in SSLMODES:
            raise SettingsError(f"{contract.API_DATABASE_SSLMODE.name} must be one of {', '.join(SSLMODES)}")
        mlflow_user, mlflow_password = mlflow_credentials()
        return cls(
            database_host=required(contract.DATABASE_HOST),
            database_name=required(contract.API_DATABASE_NAME),
            database_user=required(contract.API_DATABASE_USER),
            database_password=value(contract.API_DATABASE_PASSWORD),
            database_port=int(number(contract.API_DATABASE_PORT, 5432, minimum=1, kind=int)),
            database_sslmode=sslmode,
            database_sslrootcert=_ca_file(),
            admin_token=admin,
            airflow_url=_url(contract.API_AIRFLOW_URL),
            airflow_username=required(contract.API_AIRFLOW_USERNAME),
            airflow_password=required(contract.API_AIRFLOW_PASSWORD),
            tracking_uri=_url(contract.MLFLOW_TRACKING_URI),
            mlflow_username=mlflow_user,
            mlflow_password=mlflow_password,
            catalog_path=required(contract.MODEL_CATALOG),
            host=contract.API_HOST.get("0.0.0.0") or "0.0.0.0",
            port=int(number(contract.API_PORT_VAR, contract.API_PORT, minimum=1, kind=int)),
            reconcile_seconds=_seconds(contract.API_RECONCILE_SECONDS, api_rules.RECONCILE_SECONDS),
            events_poll_seconds=_seconds(contract.API_EVENTS_POLL_SECONDS, api_rules.EVENTS_POLL_SECONDS),
            tokens=TokenSettings.from_env(),
            admin_token_previous=_admin_previous(),
        )

    def conninfo(self) -> str:
        """libpq connection parameters (the password is passed separately: see `connect_kwargs`)."""
        params = {
            "host": self.database_host,
            "port": str(self.database_port),
            "dbname": self.database_name,
            "user": self.database_user,
            "sslmode": self.database_sslmode,
            "application_name": "mlops-api",
        }
        if self.database_sslrootcert:
            params["sslrootcert"] = self.database_sslrootcert
        return make_conninfo(**params)

    def connect_kwargs(self) -> dict[str, str]:
        """The role and its password for a new connection: read again from their files (`<NAME>_FILE`) when
        given so, so that a rotated Secret is used by the next connection; else the values read at start."""
        try:
            user = contract.API_DATABASE_USER.read_secret() or self.database_user
            password = contract.API_DATABASE_PASSWORD.read_secret() or self.database_password
        except OSError:  # a Secret being swapped: the values read last are still good for the overlap
            user, password = self.database_user, self.database_password
        return {"user": user, **({"password": password} if password else {})}


def _admin_previous() -> str | None:
    token = value(contract.API_ADMIN_TOKEN_PREVIOUS)
    if token is not None and len(token) < MIN_ADMIN_TOKEN:
        raise SettingsError(f"{contract.API_ADMIN_TOKEN_PREVIOUS.name} must be at least {MIN_ADMIN_TOKEN} characters")
    return token


def _ca_file() -> str | None:
    """The server's CA file (MLOPS_API_DATABASE_SSLROOTCERT), an absolute path; libpq verifies the server with it
    (with sslmode require too, as libpq does when a root certificate is given)."""
    path = contract.API_DATABASE_SSLROOTCERT.get()
    if path is None:
        return None
    if not path.startswith("/"):
        raise SettingsError(f"{contract.API_DATABASE_SSLROOTCERT.name} must be an absolute path, got {path!r}")
    return path


def _url(var: contract.EnvVar) -> str:
    url = required(var).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"{var.name} must be an http(s) URL, got {url!r}")
    return url


def _seconds(var: contract.EnvVar, interval: api_rules.Interval) -> float:
    return number(var, interval.default, minimum=interval.minimum, maximum=interval.maximum)


def markdown_table() -> str:
    """The table of docs/api.md (a test keeps the page in sync): `python -m services.api.settings`."""
    rows = ["| variable | secret | description |", "| --- | --- | --- |"]
    shared = (contract.DATABASE_HOST, contract.MLFLOW_TRACKING_URI, contract.MODEL_CATALOG)
    for var in (*shared, *contract.API_VARS, *contract.MLFLOW_CLIENT_VARS):
        secret = "yes" if var.secret else "no"
        if var in contract.MLFLOW_CLIENT_VARS:
            secret += " (on the cluster: MLflow's file `$HOME/.mlflow/credentials`)"
        elif var.secret or var.file:
            secret += f" (on the cluster: the file `{var.file_variable}` names)"
        rows.append(f"| `{var.name}` | {secret} | {var.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
