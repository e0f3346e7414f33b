"""Settings group `database.*`: the Postgres metadata database (RDS, in-cluster, or an existing external server)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal

from services.api.settings import SSLMODES
from stacks.settings.engine import DNS_NAME, Secret, by_env, check_cidrs, check_pem, check_quantity, setting

PG_IDENT = r"^[a-z_][a-z0-9_]{0,62}$"


def _check_host(value: str) -> str | None:
    """A DNS name or an IP address."""
    if re.match(DNS_NAME, value):
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be a DNS name or an IP address"
    return None


# The applications whose database, user and password are given when database.provisioned is true: key part -> role.
PROVISIONED_APPS = {
    "mlflow": "mlflow",
    "mlflowAuth": "mlflow_auth",
    "airflow": "airflow",
    "platformApi": "platform_api",
}


GIVEN_PARTS = ("database", "user", "password")


def _given(app: str, part: str) -> str:
    return f"database.credentials.{app}.{part}"


def _given_database(app: str) -> Any:
    return setting(_given(app, "database"), f"provisioned: {app}'s database on the external server", pattern=PG_IDENT)


def _given_user(app: str) -> Any:
    return setting(_given(app, "user"), f"provisioned: the role {app} connects as", pattern=PG_IDENT)


def _given_password(app: str) -> Any:
    return setting(_given(app, "password"), "provisioned: that role's password (secret)", secret=True)


@dataclass(frozen=True)
class GivenCredentials:
    """One application's database, user and password on a provisioned external server."""

    database: str
    user: str
    password: Secret


@dataclass(frozen=True)
class DatabaseSettings:
    mode: Literal["rds", "in-cluster", "external"] = setting(
        "database.mode",
        "rds = Amazon RDS for PostgreSQL; in-cluster = Postgres on the cluster; external = an existing PostgreSQL "
        "outside the cluster (database.host ...)",
        default_fn=by_env("in-cluster", "rds"),
        choices=("rds", "in-cluster", "external"),
    )
    engine_version: str = setting(
        "database.engineVersion",
        "PostgreSQL major version (RDS engine and in-cluster image)",
        default="16",
        choices=("14", "15", "16", "17"),
    )
    instance_class: str = setting(
        "database.instanceClass",
        "RDS instance class",
        default_fn=by_env("db.t4g.micro", "db.m7g.large"),
        pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$",
    )
    allocated_storage_gb: int = setting(
        "database.allocatedStorageGb", "RDS storage in GiB", default_fn=by_env(20, 100), minimum=20, maximum=65536
    )
    multi_az: bool = setting("database.multiAz", "RDS Multi-AZ", default_fn=by_env(False, True))
    deletion_protection: bool = setting(
        "database.deletionProtection", "RDS deletion protection", default_fn=by_env(False, True)
    )
    backup_retention_days: int = setting(
        "database.backupRetentionDays",
        "RDS automated backup retention in days",
        default_fn=by_env(7, 14),
        minimum=7,
        maximum=35,
    )
    subnet_ids: tuple[str, ...] = setting(
        "database.subnetIds",
        "private subnets of the RDS subnet group (rds mode; at least two AZs)",
        default=(),
        check=lambda v: (
            None if all(re.match(r"^subnet-[0-9a-f]+$", s) for s in v) else "must be subnet ids (subnet-...)"
        ),
    )
    vpc_id: str | None = setting(
        "database.vpcId", "VPC of the RDS security group (rds mode)", pattern=r"^vpc-[0-9a-f]+$"
    )
    allowed_cidrs: tuple[str, ...] = setting(
        "database.allowedCidrs",
        "cluster network(s) allowed to reach port 5432 (rds mode)",
        default=(),
        check=check_cidrs,
    )
    storage_size: str = setting("database.storageSize", "in-cluster volume size", default="10Gi", check=check_quantity)
    storage_class: str | None = setting(
        "database.storageClass", "StorageClass of the in-cluster volume; unset = cluster default"
    )
    host: str | None = setting(
        "database.host", "the external server's host name or IP (external mode)", check=_check_host
    )
    port: int = setting(
        "database.port", "the external server's port (external mode)", default=5432, minimum=1, maximum=65535
    )
    sslmode: str = setting(
        "database.sslmode",
        "libpq sslmode of every connection to the external server (external mode)",
        default="require",
        choices=SSLMODES,
    )
    ca_certificate: str | None = setting(
        "database.caCertificate",
        "PEM CA certificate(s) of the external server (external mode; required for verify-ca and verify-full)",
        check=check_pem,
    )
    admin_user: str | None = setting(
        "database.adminUser",
        "external mode: a role with CREATEDB and CREATEROLE (no superuser needed) that creates each app's database",
        pattern=PG_IDENT,
    )
    admin_password: Secret | None = setting(
        "database.adminPassword", "external mode: the password of database.adminUser (secret)", secret=True
    )
    cidr: str | None = setting(
        "database.cidr",
        "external mode: the server's address range, the only egress the database clients get on database.port",
        check=lambda v: "must be a CIDR block such as 10.20.0.0/24" if check_cidrs([v]) else None,
    )
    provisioned: bool = setting(
        "database.provisioned",
        "external mode without an admin: each app's database, user and password are given "
        "(database.credentials.<app>.*); the bootstrap only checks that each app reaches its database",
        default=False,
    )
    mlflow_database: str | None = _given_database("mlflow")
    mlflow_user: str | None = _given_user("mlflow")
    mlflow_password: Secret | None = _given_password("mlflow")
    mlflow_auth_database: str | None = _given_database("mlflowAuth")
    mlflow_auth_user: str | None = _given_user("mlflowAuth")
    mlflow_auth_password: Secret | None = _given_password("mlflowAuth")
    airflow_database: str | None = _given_database("airflow")
    airflow_user: str | None = _given_user("airflow")
    airflow_password: Secret | None = _given_password("airflow")
    platform_api_database: str | None = _given_database("platformApi")
    platform_api_user: str | None = _given_user("platformApi")
    platform_api_password: Secret | None = _given_password("platformApi")

    def given(self, role: str) -> GivenCredentials | None:
        """The given credentials of the application `role` (a PROVISIONED_APPS value); None unless all are set."""
        values = [getattr(self, f"{role}_{part}") for part in GIVEN_PARTS]
        return GivenCredentials(*values) if all(v is not None for v in values) else None
