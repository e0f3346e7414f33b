"""The Postgres metadata database: Amazon RDS (prod) or a StatefulSet on the cluster (dev), with one
database and role per application created by an idempotent in-cluster bootstrap Job."""

from __future__ import annotations

import functools
import hashlib
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_aws import ec2, rds
from pulumi_kubernetes.apps.v1 import (
    StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicyArgs,
    StatefulSetSpecArgs,
)
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvFromSourceArgs,
    EnvVarArgs,
    ExecActionArgs,
    PersistentVolumeClaimArgs,
    PersistentVolumeClaimSpecArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    Secret,
    SecretEnvSourceArgs,
    Service,
    ServicePortArgs,
    ServiceSpecArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from components.jobs import rerun_on_change_job
from components.pod_security import restricted_container, restricted_pod

# Official image tags pinned per major version (in-cluster mode and the bootstrap Job's psql).
POSTGRES_IMAGES = {
    "14": "postgres:14.19-bookworm",
    "15": "postgres:15.14-bookworm",
    "16": "postgres:16.10-bookworm",
    "17": "postgres:17.6-bookworm",
}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
POSTGRES_UID = 999
BOOTSTRAP_INPUTS_ANNOTATION = "mlops-platform/bootstrap-inputs"


@dataclass(frozen=True)
class AppDatabase:
    """One application's database: its name, its role, and where its connection Secret goes."""

    database: str
    role: str
    namespace: pulumi.Input[str]
    secret_name: str
    secret_format: str  # "username-password" (MLflow chart) or "sqlalchemy-url" (Airflow chart)

    def __post_init__(self) -> None:
        for ident in (self.database, self.role):
            if not _IDENT.match(ident):
                raise ValueError(f"{ident!r} is not a safe Postgres identifier")


def password_variable(role: str) -> str:
    return f"{role}_password"


def _sqlalchemy_url(parts: list[object], role: str, database: str, sslmode: str) -> str:
    password, host, port = parts
    secret = urllib.parse.quote(str(password), safe="")
    return f"postgresql://{role}:{secret}@{host}:{port}/{database}?sslmode={sslmode}"


def bootstrap_inputs_digest(parts: list[object]) -> str:
    """A digest of everything the bootstrap applies (SQL, server, role passwords): it goes on the
    Job's pod template, so a change to any of them replaces the Job and the bootstrap runs again.
    SHA-256 of 190-bit random passwords reveals nothing about them."""
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:16]


def bootstrap_sql(apps: Sequence[AppDatabase]) -> str:
    """Idempotent SQL (for psql) creating each application's role and database; each role may
    connect only to its own database. Passwords are psql variables (`-v <role>_password=...`), so
    this text holds none and can live in a ConfigMap."""
    lines = [
        "-- mlops-platform database bootstrap: safe to run any number of times",
        r"\set ON_ERROR_STOP on",
    ]
    for app in apps:
        role, db, pw = app.role, app.database, password_variable(app.role)
        lines += [
            f"-- {db}: owned by {role}, reachable by {role} only",
            f"SELECT 'CREATE ROLE {role} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{role}')\\gexec",
            f"ALTER ROLE {role} WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'{pw}';",
            # on RDS the master user is no superuser: it must be a member to make the role an owner
            f"GRANT {role} TO CURRENT_USER;",
            f"SELECT 'CREATE DATABASE {db} OWNER {role}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = "
            f"'{db}')\\gexec",
            f"ALTER DATABASE {db} OWNER TO {role};",
            f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;",
            f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role};",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DatabaseArgs:
    stack: str
    mode: str  # "rds" | "in-cluster"
    engine_version: str
    namespace: pulumi.Input[str]  # where the in-cluster server and the bootstrap Job run
    apps: Sequence[AppDatabase]
    protect: bool = True
    # rds
    instance_class: str = "db.t4g.micro"
    allocated_storage_gb: int = 20
    multi_az: bool = False
    deletion_protection: bool = False
    backup_retention_days: int = 7
    final_snapshot: bool = True
    vpc_id: str | None = None
    subnet_ids: Sequence[str] = ()
    allowed_cidrs: Sequence[str] = ()
    # in-cluster
    storage_size: str = "10Gi"
    storage_class: str | None = None


class Database(pulumi.ComponentResource):
    """Builds the platform's Postgres. `rds`: an encrypted, private `aws.rds.Instance` (pinned major
    version, Multi-AZ, deletion protection and a final snapshot as configured, automated backups)
    with a parameter group forcing TLS (`rds.force_ssl`), a subnet group, and a security group
    admitting 5432 only from the cluster network; its master password from pulumi-random.
    `in-cluster`: a StatefulSet of the official image on a PersistentVolume (probes, resources,
    non-root) and its Service. Both: a bootstrap Job that runs `bootstrap_sql` (from a ConfigMap;
    passwords from a Secret) to create one database and role per application with random
    passwords, and each application's connection Secret in its namespace, in its chart's format.
    Data-bearing resources are protected. The bootstrap re-runs whenever the SQL, the server or a
    password changes (a digest of them is on the Job's pod template), and `host` resolves only after
    it has completed, so whatever uses the host waits for the roles and databases to exist.

    Exports `host`, `port`, `databases` (app role -> database) and `admin_password` (secret).
    """

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        data = pulumi.ResourceOptions(parent=self, protect=args.protect)
        major = args.engine_version
        labels = {"app.kubernetes.io/part-of": "mlops-platform", "app.kubernetes.io/name": "postgres"}
        admin_password = random.RandomPassword(f"{name}-admin-password", length=32, special=False, opts=child)
        admin_secret: pulumi.Output[str] = pulumi.Output.secret(admin_password.result)
        self.admin_password = admin_secret
        depends: list[pulumi.Resource] = []
        if args.mode == "rds":
            if len(args.subnet_ids) < 2 or not args.vpc_id or not args.allowed_cidrs:
                raise ValueError("rds mode needs vpc_id, two or more subnet_ids and allowed_cidrs")
            subnets = rds.SubnetGroup(
                f"{name}-subnets",
                subnet_ids=list(args.subnet_ids),
                description=f"mlops-platform {args.stack} database",
                opts=child,
            )
            group = ec2.SecurityGroup(
                f"{name}-sg",
                vpc_id=args.vpc_id,
                description=f"mlops-platform {args.stack}: Postgres from the cluster network only",
                ingress=[
                    ec2.SecurityGroupIngressArgs(
                        protocol="tcp",
                        from_port=5432,
                        to_port=5432,
                        cidr_blocks=list(args.allowed_cidrs),
                        description="Postgres from the cluster",
                    )
                ],
                egress=[],
                opts=child,
            )
            params = rds.ParameterGroup(
                f"{name}-params",
                family=f"postgres{major}",
                description=f"mlops-platform {args.stack}: TLS required",
                parameters=[
                    rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1", apply_method="immediate"),
                    rds.ParameterGroupParameterArgs(name="log_connections", value="1", apply_method="immediate"),
                ],
                opts=child,
            )
            instance = rds.Instance(
                f"{name}-rds",
                identifier_prefix=f"mlops-{args.stack}-",
                engine="postgres",
                engine_version=major,
                instance_class=args.instance_class,
                allocated_storage=args.allocated_storage_gb,
                storage_type="gp3",
                storage_encrypted=True,
                publicly_accessible=False,
                multi_az=args.multi_az,
                deletion_protection=args.deletion_protection,
                backup_retention_period=args.backup_retention_days,
                skip_final_snapshot=not args.final_snapshot,
                final_snapshot_identifier=f"mlops-{args.stack}-final" if args.final_snapshot else None,
                copy_tags_to_snapshot=True,
                auto_minor_version_upgrade=True,
                username="mlops_admin",
                password=admin_secret,
                db_name="postgres",
                db_subnet_group_name=subnets.name,
                vpc_security_group_ids=[group.id],
                parameter_group_name=params.name,
                performance_insights_enabled=True,
                apply_immediately=False,
                opts=data,
            )
            host: pulumi.Output[str] = instance.address
            port: pulumi.Output[int] = instance.port
            admin_user = "mlops_admin"
            sslmode = "require"
            depends.append(instance)
        elif args.mode == "in-cluster":
            superuser = Secret(
                f"{name}-superuser",
                metadata=ObjectMetaArgs(name="postgres-superuser", namespace=args.namespace, labels=labels),
                type="Opaque",
                string_data={"POSTGRES_PASSWORD": admin_secret},
                opts=child,
            )
            selector = {"app.kubernetes.io/name": "postgres"}
            service = Service(
                f"{name}-service",
                metadata=ObjectMetaArgs(name="postgres", namespace=args.namespace, labels=labels),
                spec=ServiceSpecArgs(
                    selector=selector, ports=[ServicePortArgs(name="postgres", port=5432, target_port="postgres")]
                ),
                opts=child,
            )
            probe = ExecActionArgs(command=["pg_isready", "-U", "postgres", "-h", "127.0.0.1"])
            server = StatefulSet(
                f"{name}-statefulset",
                metadata=ObjectMetaArgs(name="postgres", namespace=args.namespace, labels=labels),
                spec=StatefulSetSpecArgs(
                    service_name="postgres",
                    replicas=1,
                    selector=LabelSelectorArgs(match_labels=selector),
                    template=PodTemplateSpecArgs(
                        metadata=ObjectMetaArgs(labels=labels),
                        spec=PodSpecArgs(
                            security_context=restricted_pod(POSTGRES_UID),
                            automount_service_account_token=False,
                            containers=[
                                ContainerArgs(
                                    name="postgres",
                                    image=POSTGRES_IMAGES[major],
                                    ports=[ContainerPortArgs(name="postgres", container_port=5432)],
                                    env=[EnvVarArgs(name="PGDATA", value="/var/lib/postgresql/data/pgdata")],
                                    env_from=[
                                        EnvFromSourceArgs(secret_ref=SecretEnvSourceArgs(name="postgres-superuser"))
                                    ],
                                    resources=ResourceRequirementsArgs(
                                        requests={"cpu": "250m", "memory": "512Mi"},
                                        limits={"cpu": "2", "memory": "2Gi"},
                                    ),
                                    readiness_probe=ProbeArgs(exec_=probe, period_seconds=5, failure_threshold=6),
                                    liveness_probe=ProbeArgs(
                                        exec_=probe, initial_delay_seconds=30, period_seconds=10, failure_threshold=6
                                    ),
                                    security_context=restricted_container(POSTGRES_UID),
                                    volume_mounts=[
                                        VolumeMountArgs(name="data", mount_path="/var/lib/postgresql/data"),
                                        VolumeMountArgs(name="run", mount_path="/var/run/postgresql"),
                                    ],
                                )
                            ],
                            volumes=[VolumeArgs(name="run", empty_dir=EmptyDirVolumeSourceArgs())],
                        ),
                    ),
                    volume_claim_templates=[
                        PersistentVolumeClaimArgs(
                            metadata=ObjectMetaArgs(name="data", labels=labels),
                            spec=PersistentVolumeClaimSpecArgs(
                                access_modes=["ReadWriteOnce"],
                                storage_class_name=args.storage_class,
                                resources=VolumeResourceRequirementsArgs(requests={"storage": args.storage_size}),
                            ),
                        )
                    ],
                    persistent_volume_claim_retention_policy=StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                        when_deleted="Retain", when_scaled="Retain"
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect, depends_on=[superuser, service]),
            )
            host = pulumi.Output.concat("postgres.", pulumi.Output.from_input(args.namespace), ".svc.cluster.local")
            port = pulumi.Output.from_input(5432)
            admin_user = "postgres"
            sslmode = "disable"
            depends.append(server)
        else:
            raise ValueError(f"unknown database mode {args.mode!r}")

        # One random password per application role.
        passwords: dict[str, pulumi.Output[str]] = {}
        for app in args.apps:
            pw = random.RandomPassword(f"{name}-{app.role}-password", length=32, special=False, opts=child)
            passwords[app.role] = pulumi.Output.secret(pw.result)

        sql = bootstrap_sql(args.apps)
        sql_map = ConfigMap(
            f"{name}-bootstrap-sql",
            metadata=ObjectMetaArgs(name="db-bootstrap-sql", namespace=args.namespace, labels=labels),
            data={"bootstrap.sql": sql},
            opts=child,
        )
        job_env: dict[str, pulumi.Input[str]] = {"PGPASSWORD": admin_secret}
        job_env.update({password_variable(role).upper(): pw for role, pw in passwords.items()})
        job_secret = Secret(
            f"{name}-bootstrap-secret",
            metadata=ObjectMetaArgs(name="db-bootstrap", namespace=args.namespace, labels=labels),
            type="Opaque",
            string_data=job_env,
            opts=child,
        )
        inputs_digest = pulumi.Output.unsecret(
            pulumi.Output.all(sql, host, port, *[passwords[a.role] for a in args.apps]).apply(bootstrap_inputs_digest)
        )
        psql_vars = " ".join(
            f'-v {password_variable(a.role)}="${password_variable(a.role).upper()}"' for a in args.apps
        )
        # New SQL (a new name) or new inputs (the digest: server, passwords) run the bootstrap again.
        job = rerun_on_change_job(
            f"{name}-bootstrap",
            name=f"db-bootstrap-{hashlib.sha256(sql.encode()).hexdigest()[:8]}",
            namespace=args.namespace,
            labels=labels,
            digest_annotation=BOOTSTRAP_INPUTS_ANNOTATION,
            digest=inputs_digest,
            uid=POSTGRES_UID,
            container=ContainerArgs(
                name="bootstrap",
                image=POSTGRES_IMAGES[major],
                command=["/bin/sh", "-c", f"exec psql -X {psql_vars} -f /sql/bootstrap.sql"],
                env=[
                    EnvVarArgs(name="PGHOST", value=host),
                    EnvVarArgs(name="PGPORT", value=port.apply(str)),
                    EnvVarArgs(name="PGUSER", value=admin_user),
                    EnvVarArgs(name="PGDATABASE", value="postgres"),
                    EnvVarArgs(name="PGSSLMODE", value=sslmode),
                    EnvVarArgs(name="PGCONNECT_TIMEOUT", value="10"),
                ],
                env_from=[EnvFromSourceArgs(secret_ref=SecretEnvSourceArgs(name="db-bootstrap"))],
                resources=ResourceRequirementsArgs(
                    requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
                ),
                security_context=restricted_container(POSTGRES_UID),
                volume_mounts=[VolumeMountArgs(name="sql", mount_path="/sql", read_only=True)],
            ),
            volumes=[VolumeArgs(name="sql", config_map=ConfigMapVolumeSourceArgs(name="db-bootstrap-sql"))],
            backoff_limit=20,
            deadline_seconds=1800,
            parent=self,
            depends_on=[*depends, sql_map, job_secret],
        )

        # Consumers of the host (connection Secrets, Helm releases, the endpoints contract) wait for
        # the bootstrap: the roles and databases exist before anything tries to use them.
        self.host: pulumi.Output[str] = pulumi.Output.all(host, job.id).apply(lambda v: str(v[0]))
        self.port: pulumi.Output[int] = port
        for app in args.apps:
            if app.secret_format == "username-password":
                content: Mapping[str, pulumi.Input[str]] = {
                    "username": pulumi.Output.secret(app.role),
                    "password": passwords[app.role],
                }
            elif app.secret_format == "sqlalchemy-url":
                url = pulumi.Output.all(passwords[app.role], self.host, self.port).apply(
                    functools.partial(_sqlalchemy_url, role=app.role, database=app.database, sslmode=sslmode)
                )
                content = {"connection": pulumi.Output.secret(url)}
            else:
                raise ValueError(f"unknown secret format {app.secret_format!r}")
            Secret(
                f"{name}-{app.role}-connection",
                metadata=ObjectMetaArgs(
                    name=app.secret_name,
                    namespace=app.namespace,
                    labels={"app.kubernetes.io/part-of": "mlops-platform"},
                ),
                type="Opaque",
                string_data=content,
                opts=child,
            )
        self.databases = {app.role: app.database for app in args.apps}
        self.register_outputs(
            {"host": self.host, "port": self.port, "databases": self.databases, "admin_password": self.admin_password}
        )
