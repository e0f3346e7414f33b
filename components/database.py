"""The Postgres metadata database: Amazon RDS (prod), a StatefulSet on the cluster (dev) or an existing server
outside the cluster (on premises), with one database and role per application created by an idempotent in-cluster
bootstrap Job."""

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
from pulumi_kubernetes.batch.v1 import Job
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
from components.namespaces import NamespaceRef
from components.naming import APP_NAME, cluster_host, labels, platform_key, stack_name
from components.pod_security import restricted_container, restricted_pod
from stacks.settings import THIRD_PARTY_IMAGES, ImageRef

# The official image per major version (in-cluster mode and the bootstrap Job's psql): the third-party images
# `postgres-<major>` of the stack settings; `DatabaseArgs.image` is the stack's reference (pinned in prod).
POSTGRES_IMAGES = {
    major: ImageRef.parse(THIRD_PARTY_IMAGES[f"postgres-{major}"]).reference.split("@")[0]
    for major in ("14", "15", "16", "17")
}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
POSTGRES_UID = 999
BOOTSTRAP_INPUTS_ANNOTATION = platform_key("bootstrap-inputs")
# Object names in the database namespace: the in-cluster server's Service and StatefulSet, its
# superuser Secret; the bootstrap's Secret (its Job is `db-bootstrap-<digest of the SQL>`) and SQL.
SERVER = "postgres"
SUPERUSER_SECRET = "postgres-superuser"
BOOTSTRAP = "db-bootstrap"
BOOTSTRAP_SQL = "db-bootstrap-sql"
SERVER_CA = "db-server-ca"  # the external server's CA (ConfigMap `ca.crt`), mounted where PGSSLROOTCERT points
CA_DIR = "/etc/postgres-ca"
RDS_ADMIN_USER = "mlops_admin"


@dataclass(frozen=True)
class AppDatabase:
    """One application's database: its name, its role, and where its connection Secret goes."""

    database: str
    role: str
    namespace: NamespaceRef
    secret_name: str
    secret_format: str  # "username-password" (MLflow chart) or "sqlalchemy-url" (Airflow chart)
    app: str = ""  # the application, as messages name it; empty = the role

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


def verify_script(apps: Sequence[AppDatabase]) -> str:
    """Shell (for the postgres image) checking that each application's role reaches its own database, with the
    password in `$<ROLE>_PASSWORD`: for a provisioned server, where the databases and roles are given, not created.
    Every application is tried; each failure is named, and any failure fails the script."""
    lines = ["# mlops-platform: check the given database credentials", "failed=0"]
    for app in apps:
        who = app.app or app.role
        lines.append(
            f'PGPASSWORD="${password_variable(app.role).upper()}" psql -X -w -q -U {app.role} -d {app.database} '
            f"-c 'SELECT 1' >/dev/null || {{ echo \"{who}: cannot connect to database {app.database} as "
            f'{app.role}" >&2; failed=1; }}'
        )
    lines.append('exit "$failed"')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DatabaseArgs:
    stack: str
    mode: str  # "rds" | "in-cluster" | "external"
    engine_version: str
    namespace: NamespaceRef  # where the in-cluster server and the bootstrap Job run
    apps: Sequence[AppDatabase]
    protect: bool = True
    image: str | None = None  # the postgres image (server and bootstrap); None: POSTGRES_IMAGES[engine_version]
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
    # external: an existing server; the bootstrap runs as `admin_user` (CREATEDB and CREATEROLE suffice)
    host: str | None = None
    port: int = 5432
    sslmode: str = "require"
    ca_certificate: str | None = None  # PEM; mounted for the bootstrap (verify-ca, verify-full)
    admin_user: str | None = None
    admin_password: pulumi.Input[str] | None = None  # secret
    # external, provisioned: role -> its given password (secret); no admin, the Job only checks each app connects
    given_passwords: Mapping[str, pulumi.Input[str]] | None = None


@dataclass(frozen=True)
class _Server:
    """Where the bootstrap reaches the server, as whom, and the resource that must exist first."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    admin_user: str
    sslmode: str
    ready: pulumi.Resource | None  # None: an external server, already there
    ca: bool = False  # a CA ConfigMap (SERVER_CA) is mounted at CA_DIR


def _postgres_pod(args: DatabaseArgs, pod_labels: Mapping[str, str]) -> PodTemplateSpecArgs:
    """The in-cluster server's pod: the official image, non-root, probes, resources, data on its claim."""
    probe = ExecActionArgs(command=["pg_isready", "-U", "postgres", "-h", "127.0.0.1"])
    container = ContainerArgs(
        name="postgres",
        image=args.image or POSTGRES_IMAGES[args.engine_version],
        ports=[ContainerPortArgs(name="postgres", container_port=5432)],
        env=[EnvVarArgs(name="PGDATA", value="/var/lib/postgresql/data/pgdata")],
        env_from=[EnvFromSourceArgs(secret_ref=SecretEnvSourceArgs(name=SUPERUSER_SECRET))],
        resources=ResourceRequirementsArgs(
            requests={"cpu": "250m", "memory": "512Mi"},
            limits={"cpu": "2", "memory": "2Gi"},
        ),
        readiness_probe=ProbeArgs(exec_=probe, period_seconds=5, failure_threshold=6),
        liveness_probe=ProbeArgs(exec_=probe, initial_delay_seconds=30, period_seconds=10, failure_threshold=6),
        security_context=restricted_container(POSTGRES_UID),
        volume_mounts=[
            VolumeMountArgs(name="data", mount_path="/var/lib/postgresql/data"),
            VolumeMountArgs(name="run", mount_path="/var/run/postgresql"),
        ],
    )
    return PodTemplateSpecArgs(
        metadata=ObjectMetaArgs(labels=dict(pod_labels)),
        spec=PodSpecArgs(
            security_context=restricted_pod(POSTGRES_UID),
            automount_service_account_token=False,
            containers=[container],
            volumes=[VolumeArgs(name="run", empty_dir=EmptyDirVolumeSourceArgs())],
        ),
    )


def _bootstrap_container(args: DatabaseArgs, server: _Server) -> ContainerArgs:
    """psql applying the bootstrap SQL as the admin user, each role's password as a psql variable."""
    psql_vars = " ".join(f'-v {password_variable(a.role)}="${password_variable(a.role).upper()}"' for a in args.apps)
    command = f"exec psql -X {psql_vars} -f /sql/bootstrap.sql"
    if args.given_passwords is not None:
        command = "exec /bin/sh /sql/verify.sh"
    mounts = [VolumeMountArgs(name="sql", mount_path="/sql", read_only=True)]
    ca_env = []
    if server.ca:
        mounts.append(VolumeMountArgs(name="ca", mount_path=CA_DIR, read_only=True))
        ca_env.append(EnvVarArgs(name="PGSSLROOTCERT", value=f"{CA_DIR}/ca.crt"))
    return ContainerArgs(
        name="bootstrap",
        image=args.image or POSTGRES_IMAGES[args.engine_version],
        command=["/bin/sh", "-c", command],
        env=[
            EnvVarArgs(name="PGHOST", value=server.host),
            EnvVarArgs(name="PGPORT", value=server.port.apply(str)),
            *([EnvVarArgs(name="PGUSER", value=server.admin_user)] if server.admin_user else []),
            EnvVarArgs(name="PGDATABASE", value="postgres"),
            EnvVarArgs(name="PGSSLMODE", value=server.sslmode),
            EnvVarArgs(name="PGCONNECT_TIMEOUT", value="10"),
            *ca_env,
        ],
        env_from=[EnvFromSourceArgs(secret_ref=SecretEnvSourceArgs(name=BOOTSTRAP))],
        resources=ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
        ),
        security_context=restricted_container(POSTGRES_UID),
        volume_mounts=mounts,
    )


def _external_inputs(args: DatabaseArgs) -> list[pulumi.Input[str]]:
    """What else re-runs the bootstrap on an external server: how it connects (sslmode, CA) and as whom."""
    if args.mode != "external":
        return []
    return [args.sslmode, args.ca_certificate or "", args.admin_user or "", args.admin_password or ""]


class Database(pulumi.ComponentResource):
    """Builds the platform's Postgres. `rds`: an encrypted, private `aws.rds.Instance` (pinned major
    version, Multi-AZ, deletion protection and a final snapshot as configured, automated backups)
    with a parameter group forcing TLS (`rds.force_ssl`), a subnet group, and a security group
    admitting 5432 only from the cluster network; its master password from pulumi-random.
    `in-cluster`: a StatefulSet of the official image on a PersistentVolume (probes, resources,
    non-root) and its Service. `external`: nothing but, with a CA, its ConfigMap: the bootstrap reaches the
    given host and port as the given admin with the given sslmode. All: a bootstrap Job that runs
    `bootstrap_sql` (from a ConfigMap; passwords from a Secret) to create one database and role per
    application with random passwords, and each application's connection Secret in its namespace, in its chart's format.
    Data-bearing resources are protected. The bootstrap re-runs whenever the SQL, the server or a
    password changes (a digest of them is on the Job's pod template), and `host` resolves only after
    it has completed, so whatever uses the host waits for the roles and databases to exist.

    Exports the attributes below.
    """

    host: pulumi.Output[str]
    """The server's host name; resolves once the bootstrap Job has completed."""
    port: pulumi.Output[int]
    databases: dict[str, str]
    """Application role -> its database."""
    admin_password: pulumi.Output[str]
    """The admin (RDS master, in-cluster superuser, or the external server's given admin) password; secret."""
    sslmode: str
    """The sslmode every connection uses (the bootstrap's and the applications')."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:Database", name, None, opts)
        if args.mode == "rds":
            self.admin_password = self._admin_password(name)
            server = self._rds(name, args)
        elif args.mode == "in-cluster":
            self.admin_password = self._admin_password(name)
            server = self._in_cluster(name, args)
        elif args.mode == "external":
            server = self._external(name, args)
        else:
            raise ValueError(f"unknown database mode {args.mode!r}")
        self.sslmode = server.sslmode
        passwords = self._app_passwords(name, args)
        job = self._bootstrap(name, args, server, passwords)
        # Consumers of the host (connection Secrets, Helm releases, the endpoints contract) wait for
        # the bootstrap: the roles and databases exist before anything tries to use them.
        self.host = pulumi.Output.all(server.host, job.id).apply(lambda v: str(v[0]))
        self.port = server.port
        self._connection_secrets(name, args, passwords, server.sslmode)
        self.databases = {app.role: app.database for app in args.apps}
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "databases": self.databases,
                "admin_password": self.admin_password,
                "sslmode": self.sslmode,
            }
        )

    def _admin_password(self, name: str) -> pulumi.Output[str]:
        generated = random.RandomPassword(
            f"{name}-admin-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        return pulumi.Output.secret(generated.result)

    def _rds(self, name: str, args: DatabaseArgs) -> _Server:
        """The RDS instance (protected) in its subnet group, security group and TLS-only parameter group."""
        if len(args.subnet_ids) < 2 or not args.vpc_id or not args.allowed_cidrs:
            raise ValueError("rds mode needs vpc_id, two or more subnet_ids and allowed_cidrs")
        child = pulumi.ResourceOptions(parent=self)
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
            family=f"postgres{args.engine_version}",
            description=f"mlops-platform {args.stack}: TLS required",
            parameters=[
                rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1", apply_method="immediate"),
                rds.ParameterGroupParameterArgs(name="log_connections", value="1", apply_method="immediate"),
            ],
            opts=child,
        )
        instance = rds.Instance(
            f"{name}-rds",
            identifier_prefix=stack_name(args.stack, ""),
            engine="postgres",
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            publicly_accessible=False,
            multi_az=args.multi_az,
            deletion_protection=args.deletion_protection,
            backup_retention_period=args.backup_retention_days,
            skip_final_snapshot=not args.final_snapshot,
            final_snapshot_identifier=stack_name(args.stack, "final") if args.final_snapshot else None,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            username=RDS_ADMIN_USER,
            password=self.admin_password,
            db_name="postgres",
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[group.id],
            parameter_group_name=params.name,
            performance_insights_enabled=True,
            apply_immediately=False,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        return _Server(instance.address, instance.port, RDS_ADMIN_USER, "require", ready=instance)

    def _in_cluster(self, name: str, args: DatabaseArgs) -> _Server:
        """The superuser Secret, the Service and the StatefulSet (protected, claims retained)."""
        child = pulumi.ResourceOptions(parent=self)
        server_labels = labels(name=SERVER)
        superuser = Secret(
            f"{name}-superuser",
            metadata=ObjectMetaArgs(name=SUPERUSER_SECRET, namespace=args.namespace.output, labels=server_labels),
            type="Opaque",
            string_data={"POSTGRES_PASSWORD": self.admin_password},
            opts=child,
        )
        selector = {APP_NAME: SERVER}
        service = Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(name=SERVER, namespace=args.namespace.output, labels=server_labels),
            spec=ServiceSpecArgs(
                selector=selector, ports=[ServicePortArgs(name="postgres", port=5432, target_port="postgres")]
            ),
            opts=child,
        )
        server = StatefulSet(
            f"{name}-statefulset",
            metadata=ObjectMetaArgs(name=SERVER, namespace=args.namespace.output, labels=server_labels),
            spec=StatefulSetSpecArgs(
                service_name=SERVER,
                replicas=1,
                selector=LabelSelectorArgs(match_labels=selector),
                template=_postgres_pod(args, server_labels),
                volume_claim_templates=[
                    PersistentVolumeClaimArgs(
                        metadata=ObjectMetaArgs(name="data", labels=server_labels),
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
        host = cluster_host(SERVER, args.namespace.name)
        return _Server(host, pulumi.Output.from_input(5432), "postgres", "disable", ready=server)

    def _external(self, name: str, args: DatabaseArgs) -> _Server:
        """An existing server: its given admin (secret) and, with a CA, the CA's ConfigMap for the bootstrap."""
        provisioned = args.given_passwords is not None
        if not args.host or (not provisioned and (not args.admin_user or args.admin_password is None)):
            raise ValueError("external mode needs host, and admin_user and admin_password unless provisioned")
        if args.sslmode in ("verify-ca", "verify-full") and not args.ca_certificate:
            raise ValueError(f"sslmode {args.sslmode} needs ca_certificate")
        self.admin_password = pulumi.Output.secret(args.admin_password or "")
        ca = None
        if args.ca_certificate:
            ca = ConfigMap(
                f"{name}-server-ca",
                metadata=ObjectMetaArgs(name=SERVER_CA, namespace=args.namespace.output, labels=labels(name=BOOTSTRAP)),
                data={"ca.crt": args.ca_certificate},
                opts=pulumi.ResourceOptions(parent=self),
            )
        host, port = pulumi.Output.from_input(args.host), pulumi.Output.from_input(args.port)
        return _Server(host, port, args.admin_user or "", args.sslmode, ready=ca, ca=ca is not None)

    def _app_passwords(self, name: str, args: DatabaseArgs) -> dict[str, pulumi.Output[str]]:
        """One random password per application role (secret); the given ones on a provisioned server."""
        if args.given_passwords is not None:
            return {role: pulumi.Output.secret(pw) for role, pw in args.given_passwords.items()}
        passwords: dict[str, pulumi.Output[str]] = {}
        for app in args.apps:
            pw = random.RandomPassword(
                f"{name}-{app.role}-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            passwords[app.role] = pulumi.Output.secret(pw.result)
        return passwords

    def _bootstrap(
        self, name: str, args: DatabaseArgs, server: _Server, passwords: Mapping[str, pulumi.Output[str]]
    ) -> Job:
        """The SQL ConfigMap, the passwords' Secret and the Job applying them once the server exists."""
        child = pulumi.ResourceOptions(parent=self)
        # its own name: the server's selector (and the NetworkPolicy admitting the bootstrap) tell them apart
        job_labels = labels(name=BOOTSTRAP)
        sql, file = bootstrap_sql(args.apps), "bootstrap.sql"
        if args.given_passwords is not None:
            sql, file = verify_script(args.apps), "verify.sh"
        sql_map = ConfigMap(
            f"{name}-bootstrap-sql",
            metadata=ObjectMetaArgs(name=BOOTSTRAP_SQL, namespace=args.namespace.output, labels=job_labels),
            data={file: sql},
            opts=child,
        )
        job_env: dict[str, pulumi.Input[str]] = {}
        if args.given_passwords is None:
            job_env["PGPASSWORD"] = self.admin_password
        job_env.update({password_variable(role).upper(): pw for role, pw in passwords.items()})
        job_secret = Secret(
            f"{name}-bootstrap-secret",
            metadata=ObjectMetaArgs(name=BOOTSTRAP, namespace=args.namespace.output, labels=job_labels),
            type="Opaque",
            string_data=job_env,
            opts=child,
        )
        volumes = [VolumeArgs(name="sql", config_map=ConfigMapVolumeSourceArgs(name=BOOTSTRAP_SQL))]
        if server.ca:
            volumes.append(VolumeArgs(name="ca", config_map=ConfigMapVolumeSourceArgs(name=SERVER_CA)))
        # New SQL (a new name) or new inputs (the digest: server, passwords) run the bootstrap again.
        return rerun_on_change_job(
            f"{name}-bootstrap",
            name=f"{BOOTSTRAP}-{hashlib.sha256(sql.encode()).hexdigest()[:8]}",
            namespace=args.namespace,
            labels=job_labels,
            digest_annotation=BOOTSTRAP_INPUTS_ANNOTATION,
            inputs=[sql, server.host, server.port, *[passwords[a.role] for a in args.apps], *_external_inputs(args)],
            uid=POSTGRES_UID,
            container=_bootstrap_container(args, server),
            volumes=volumes,
            backoff_limit=20,
            deadline_seconds=1800,
            parent=self,
            depends_on=[r for r in (server.ready, sql_map, job_secret) if r is not None],
        )

    def _connection_secrets(
        self, name: str, args: DatabaseArgs, passwords: Mapping[str, pulumi.Output[str]], sslmode: str
    ) -> None:
        """Each application's connection Secret in its namespace, in the format its chart reads."""
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
                metadata=ObjectMetaArgs(name=app.secret_name, namespace=app.namespace.output, labels=labels()),
                type="Opaque",
                string_data=content,
                opts=pulumi.ResourceOptions(parent=self),
            )
