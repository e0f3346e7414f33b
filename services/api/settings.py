"""Settings of the platform API, read once from the contract's environment variables.

Required: the database (`MLOPS_DATABASE_HOST`, `MLOPS_API_DATABASE_NAME`, `MLOPS_API_DATABASE_USER`; the password
when the server asks for one), the admin token, Airflow's URL and user, MLflow's URL and the model catalog's path.
Invalid settings stop the process at start with a message naming the variable.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from services.common import contract

MIN_ADMIN_TOKEN = 24
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class SettingsError(ValueError):
    """An API setting is missing or invalid; the message names the variable."""


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
    host: str = "0.0.0.0"
    port: int = contract.API_PORT
    reconcile_seconds: float = 5.0
    events_poll_seconds: float = 1.0
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @classmethod
    def from_env(cls) -> Settings:
        admin = _required(contract.API_ADMIN_TOKEN)
        if len(admin) < MIN_ADMIN_TOKEN:
            raise SettingsError(f"{contract.API_ADMIN_TOKEN.name} must be at least {MIN_ADMIN_TOKEN} characters")
        sslmode = contract.API_DATABASE_SSLMODE.get("prefer") or "prefer"
        if sslmode not in SSLMODES:
            raise SettingsError(f"{contract.API_DATABASE_SSLMODE.name} must be one of {', '.join(SSLMODES)}")
        return cls(
            database_host=_required(contract.DATABASE_HOST),
            database_name=_required(contract.API_DATABASE_NAME),
            database_user=_required(contract.API_DATABASE_USER),
            database_password=contract.API_DATABASE_PASSWORD.get(),
            database_port=int(_number(contract.API_DATABASE_PORT, 5432, minimum=1, kind=int)),
            database_sslmode=sslmode,
            admin_token=admin,
            airflow_url=_url(contract.API_AIRFLOW_URL),
            airflow_username=_required(contract.API_AIRFLOW_USERNAME),
            airflow_password=_required(contract.API_AIRFLOW_PASSWORD),
            tracking_uri=_url(contract.MLFLOW_TRACKING_URI),
            mlflow_username=contract.MLFLOW_TRACKING_USERNAME.get(),
            mlflow_password=contract.MLFLOW_TRACKING_PASSWORD.get(),
            catalog_path=_required(contract.MODEL_CATALOG),
            host=contract.API_HOST.get("0.0.0.0") or "0.0.0.0",
            port=int(_number(contract.API_PORT_VAR, contract.API_PORT, minimum=1, kind=int)),
            reconcile_seconds=_number(contract.API_RECONCILE_SECONDS, 5.0, minimum=0.1, kind=float),
            events_poll_seconds=_number(contract.API_EVENTS_POLL_SECONDS, 1.0, minimum=0.05, kind=float),
        )

    def conninfo(self) -> str:
        """libpq connection parameters (the password is passed separately: see `connect_kwargs`)."""
        return (
            f"host={self.database_host} port={self.database_port} dbname={self.database_name} "
            f"user={self.database_user} sslmode={self.database_sslmode} application_name=mlops-api"
        )

    def connect_kwargs(self) -> dict[str, str]:
        return {"password": self.database_password} if self.database_password else {}


def _required(var: contract.EnvVar) -> str:
    try:
        return var.require()
    except RuntimeError as exc:
        raise SettingsError(str(exc)) from None


def _url(var: contract.EnvVar) -> str:
    value = _required(var).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{var.name} must be an http(s) URL, got {value!r}")
    return value


def _number(var: contract.EnvVar, default: float, *, minimum: float, kind: type[int] | type[float]) -> float:
    try:
        return var.number(default, minimum=minimum, kind=kind)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def markdown_table() -> str:
    """The table of docs/api.md (a test keeps the page in sync): `python -m services.api.settings`."""
    rows = ["| variable | secret | description |", "| --- | --- | --- |"]
    shared = (contract.DATABASE_HOST, contract.MLFLOW_TRACKING_URI, contract.MODEL_CATALOG)
    for var in (*shared, *contract.API_VARS, *contract.MLFLOW_CLIENT_VARS):
        rows.append(f"| `{var.name}` | {'yes' if var.secret else 'no'} | {var.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
