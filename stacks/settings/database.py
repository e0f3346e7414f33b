"""Settings group `database.*`: the Postgres metadata database (RDS or in-cluster)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from stacks.settings.engine import by_env, check_cidrs, check_quantity, setting


@dataclass(frozen=True)
class DatabaseSettings:
    mode: Literal["rds", "in-cluster"] = setting(
        "database.mode",
        "rds = Amazon RDS for PostgreSQL; in-cluster = Postgres on the cluster",
        default_fn=by_env("in-cluster", "rds"),
        choices=("rds", "in-cluster"),
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
