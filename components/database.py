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
    EnvVarArgs,
    ExecActionArgs,
    PersistentVolumeClaimArgs,
    PersistentVolumeClaimSpecArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    Secret,
    Service,
    ServicePortArgs,
    ServiceSpecArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from components.artifact_store import KeySlot, RotationPlan
from components.jobs import inputs_digest, rerun_on_change_job
from components.namespaces import NamespaceRef
from components.naming import APP_NAME, cluster_host, labels, platform_key, stack_name
from components.pod_security import restricted_container, restricted_pod, secret_mount, secret_volume
from services.common import contract
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
# Credentials as files (services/common/contract.py): the bootstrap's Secret is mounted here, one file per key (the
# admin's ADMIN_PASSWORD_KEY, each role's password_variable(role).upper()); psql reads the admin's password from a
# pgpass file built in JOB_HOME and the roles' through `password_sql`: no password in env or argv.
BOOTSTRAP_SECRETS = contract.secret_file(BOOTSTRAP, "").rstrip("/")
SUPERUSER_SECRETS = contract.secret_file(SUPERUSER_SECRET, "").rstrip("/")
ADMIN_PASSWORD_KEY = "PGPASSWORD"
JOB_HOME = "/home/bootstrap"  # an emptyDir: $HOME (the pgpass file) of the read-only-root Job
SQL_DIR = "/sql"


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


def server_ca_path() -> str:
    """Where a client finds the external server's CA: the ConfigMap `ca_configmap` mounted at CA_DIR (libpq's
    PGSSLROOTCERT / sslrootcert)."""
    return f"{CA_DIR}/ca.crt"


def password_variable(role: str) -> str:
    return f"{role}_password"


# Each application's two login roles (`<role>_a`, `<role>_b`): slot k of the rotation plan (see
# `components.artifact_store.RotationPlan`, the IAM keys' scheme) is the login role `<role>_<SLOTS[k]>`.
SLOTS = ("a", "b")
_MAX_OWNER = 63 - len("_a")
_OWNER_MARK = "mlops-platform owner since rotation period "


def login_role(role: str, slot: int) -> str:
    """The login role of `slot` (0 or 1) of the owner role `role`."""
    return f"{role}_{SLOTS[slot]}"


def slot_comment(role: str, slot: KeySlot) -> str:
    """What the bootstrap writes on a login role: whose slot it is and the period its password was issued in."""
    return f"mlops-platform login slot {SLOTS[slot.slot]} of {role}, password of rotation period {slot.generation}"


def _sqlalchemy_url(parts: list[object], role: str, database: str, sslmode: str) -> str:
    password, host, port = parts
    secret = urllib.parse.quote(str(password), safe="")
    return f"postgresql://{role}:{secret}@{host}:{port}/{database}?sslmode={sslmode}"


def _ended_sessions(role: str, condition: str) -> str:
    """SQL ending the sessions of `role` when `condition` holds (the admin has the role's privileges)."""
    return (
        f"SELECT count(pg_terminate_backend(pid)) AS ended_sessions_of_{role} FROM pg_stat_activity "
        f"WHERE usename = '{role}' AND ({condition});"
    )


def _owner_sql(role: str, period: int) -> list[str]:
    """The NOLOGIN owner role. One that logged in itself (before the login roles) keeps its login for the rest of
    the period it is converted in: its pods roll onto a login role first, then it loses its login."""
    comment = "shobj_description(oid, 'pg_authid')"
    marked = f"starts_with(coalesce({comment}, ''), '{_OWNER_MARK}')"
    converted_before = (
        f"SELECT FROM pg_roles WHERE rolname = '{role}' AND rolcanlogin "
        f"AND CASE WHEN {marked} THEN substr({comment}, {len(_OWNER_MARK) + 1})::bigint < {period} END"
    )
    return [
        f"SELECT 'CREATE ROLE {role} NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}')\\gexec",
        f"ALTER ROLE {role} WITH NOCREATEDB NOCREATEROLE;",
        # on RDS the master user is no superuser: it must be a member to make the role an owner
        f"GRANT {role} TO CURRENT_USER;",
        f"SELECT format('COMMENT ON ROLE %I IS %L', rolname, '{_OWNER_MARK}{period}') FROM pg_roles "
        f"WHERE rolname = '{role}' AND NOT {marked}\\gexec",
        f"SELECT 'ALTER ROLE {role} NOLOGIN PASSWORD NULL' WHERE EXISTS ({converted_before})\\gexec",
        _ended_sessions(role, f"NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}' AND rolcanlogin)"),
    ]


def _slot_sql(role: str, slot: KeySlot) -> list[str]:
    """One login role: a member of the owner role acting as it (what it creates belongs to the owner), its
    password of its slot's period. A password issued in a new period ends the sessions of the one it replaces."""
    login, comment = login_role(role, slot.slot), slot_comment(role, slot)
    issued = f"SELECT FROM pg_roles WHERE rolname = '{login}' AND shobj_description(oid, 'pg_authid') = '{comment}'"
    return [
        f"SELECT 'CREATE ROLE {login} NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login}')"
        "\\gexec",
        f"ALTER ROLE {login} WITH NOCREATEDB NOCREATEROLE INHERIT;",
        f"GRANT {role} TO {login};",
        f"ALTER ROLE {login} SET role = '{role}';",
        # the admin may end its sessions (pg_terminate_backend needs the role's privileges)
        f"GRANT {login} TO CURRENT_USER;",
        f"ALTER ROLE {login} WITH LOGIN PASSWORD :'{password_variable(login)}';",
        _ended_sessions(login, f"NOT EXISTS ({issued})"),
        f"COMMENT ON ROLE {login} IS '{comment}';",
    ]


def bootstrap_sql(apps: Sequence[AppDatabase], rotation: RotationPlan) -> str:
    """Idempotent SQL (for psql) creating each application's database, owned by a NOLOGIN role (the
    application's role), and two login roles that act as it and alternate on the rotation period (`<role>_a`,
    `<role>_b`, see `RotationPlan`): each holds the password of the last period of its slot, so the active one
    has this period's and the other the previous period's (still valid while pods roll onto the new one). Only
    these roles may connect to the database. Passwords are psql variables (`-v <login role>_password=...`), so
    this text holds none and can live in a ConfigMap; it changes with the period (the Job runs again)."""
    lines = [
        "-- mlops-platform database bootstrap: safe to run any number of times",
        f"-- rotation period {rotation.period}: active login roles *_{SLOTS[rotation.active.slot]}",
        r"\set ON_ERROR_STOP on",
    ]
    for app in apps:
        role, db = app.role, app.database
        if len(role) > _MAX_OWNER:
            raise ValueError(f"{role!r} is too long for its login roles (at most {_MAX_OWNER} characters)")
        logins = " and ".join(login_role(role, k) for k in (0, 1))
        lines += [f"-- {db}: owned by {role} (NOLOGIN), reached by {logins} only", *_owner_sql(role, rotation.period)]
        for slot in rotation.slots:
            lines += _slot_sql(role, slot)
        lines += [
            f"SELECT 'CREATE DATABASE {db} OWNER {role}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = "
            f"'{db}')\\gexec",
            f"ALTER DATABASE {db} OWNER TO {role};",
            f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;",
            f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role};",
        ]
    return "\n".join(lines) + "\n"


def _pgpass_line(user: str, password_file: str) -> str:
    """Shell appending one pgpass line (any host, port and database; `user`) with the password of `password_file`
    (`:` and backslash escaped as libpq wants) to $PGPASSFILE: printf is a shell builtin, so no argv holds it."""
    escaped = f"$(sed -e 's/[\\\\:]/\\\\&/g' '{password_file}')"
    return f'printf \'*:*:*:{user}:%s\\n\' "{escaped}" >>"$PGPASSFILE"'


def _pgpass_prelude() -> list[str]:
    return ["set -eu", "umask 077", 'export PGPASSFILE="$HOME/.pgpass"', ': >"$PGPASSFILE"']


def password_sql(roles: Sequence[str], secrets_dir: str = BOOTSTRAP_SECRETS) -> str:
    """psql lines setting each role's password variable (`password_variable`) from its file in `secrets_dir`, run
    before `bootstrap_sql`: psql reads the files itself (a backquoted `cat` of the path), so no password is on a
    command line or in the environment. No secret in this text: it lives in the SQL ConfigMap."""
    lines = ["-- the roles' passwords, read from the mounted Secret's files", r"\set ON_ERROR_STOP on"]
    lines += [f"\\set {password_variable(r)} `cat '{secrets_dir}/{password_variable(r).upper()}'`" for r in roles]
    return "\n".join(lines) + "\n"


def bootstrap_script(roles: Sequence[str], secrets_dir: str = BOOTSTRAP_SECRETS, sql_dir: str = SQL_DIR) -> str:
    """Shell (for the postgres image) applying `password_sql` and `bootstrap_sql` as the admin, whose password psql
    reads from a pgpass file ($HOME/.pgpass, mode 0600) built from the mounted Secret's file. It first checks that
    every role's password file is there and not empty (psql would set an empty password from a failed `cat`)."""
    files = [f"{secrets_dir}/{password_variable(r).upper()}" for r in roles]
    lines = [
        "# mlops-platform: database bootstrap (passwords from files, none on a command line)",
        *_pgpass_prelude(),
        *[f"test -s '{f}' || {{ echo '{f}: missing or empty' >&2; exit 1; }}" for f in files],
        _pgpass_line("*", f"{secrets_dir}/{ADMIN_PASSWORD_KEY}"),
        f"exec psql -X -w -f '{sql_dir}/passwords.sql' -f '{sql_dir}/bootstrap.sql'",
    ]
    return "\n".join(lines) + "\n"


def verify_script(apps: Sequence[AppDatabase], secrets_dir: str = BOOTSTRAP_SECRETS) -> str:
    """Shell (for the postgres image) checking that each application's role reaches its own database, with the
    password in the file `<secrets_dir>/<ROLE>_PASSWORD` (through a pgpass file): for a provisioned server, where the
    databases and roles are given, not created. Every application is tried; each failure is named, and any failure
    fails the script."""
    lines = ["# mlops-platform: check the given database credentials", *_pgpass_prelude()]
    lines += [_pgpass_line(a.role, f"{secrets_dir}/{password_variable(a.role).upper()}") for a in apps]
    lines.append("failed=0")
    for app in apps:
        who = app.app or app.role
        lines.append(
            f"psql -X -w -q -U {app.role} -d {app.database} "
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
    rotation: RotationPlan  # the stack's rotation period in force: which login role is active (not provisioned)
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


def password_roles(args: DatabaseArgs) -> list[str]:
    """The roles whose passwords the bootstrap gets, in order: each application's two login roles, or on a
    provisioned server each given role."""
    if args.given_passwords is not None:
        return [app.role for app in args.apps]
    return [login_role(app.role, slot) for app in args.apps for slot in (0, 1)]


def active_role(args: DatabaseArgs, app: AppDatabase) -> str:
    """The role the application connects as: the active slot's login role, or on a provisioned server the given
    role."""
    return app.role if args.given_passwords is not None else login_role(app.role, args.rotation.active.slot)


def _postgres_pod(args: DatabaseArgs, pod_labels: Mapping[str, str]) -> PodTemplateSpecArgs:
    """The in-cluster server's pod: the official image, non-root, probes, resources, data on its claim."""
    probe = ExecActionArgs(command=["pg_isready", "-U", "postgres", "-h", "127.0.0.1"])
    container = ContainerArgs(
        name="postgres",
        image=args.image or POSTGRES_IMAGES[args.engine_version],
        ports=[ContainerPortArgs(name="postgres", container_port=5432)],
        env=[
            EnvVarArgs(name="PGDATA", value="/var/lib/postgresql/data/pgdata"),
            # the image's entrypoint reads the superuser's password from this file (credentials as files)
            EnvVarArgs(name="POSTGRES_PASSWORD_FILE", value=f"{SUPERUSER_SECRETS}/POSTGRES_PASSWORD"),
        ],
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
            VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108 - emptyDir (read-only root)
            secret_mount("superuser", SUPERUSER_SECRET),
        ],
    )
    return PodTemplateSpecArgs(
        metadata=ObjectMetaArgs(labels=dict(pod_labels)),
        spec=PodSpecArgs(
            security_context=restricted_pod(POSTGRES_UID),
            automount_service_account_token=False,
            containers=[container],
            volumes=[
                VolumeArgs(name="run", empty_dir=EmptyDirVolumeSourceArgs()),
                VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="1Gi")),
                secret_volume("superuser", SUPERUSER_SECRET),
            ],
        ),
    )


def _bootstrap_container(args: DatabaseArgs, server: _Server) -> ContainerArgs:
    """psql applying the bootstrap SQL as the admin user (`bootstrap_script`), or checking given credentials
    (`verify_script`); every password read from the mounted Secret's files, none in env or argv."""
    script = "verify.sh" if args.given_passwords is not None else "bootstrap.sh"
    mounts = [
        VolumeMountArgs(name="sql", mount_path=SQL_DIR, read_only=True),
        secret_mount("passwords", BOOTSTRAP),
        VolumeMountArgs(name="home", mount_path=JOB_HOME),
        VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108 - emptyDir (read-only root)
    ]
    ca_env = []
    if server.ca:
        mounts.append(VolumeMountArgs(name="ca", mount_path=CA_DIR, read_only=True))
        ca_env.append(EnvVarArgs(name="PGSSLROOTCERT", value=server_ca_path()))
    return ContainerArgs(
        name="bootstrap",
        image=args.image or POSTGRES_IMAGES[args.engine_version],
        command=["/bin/sh", f"{SQL_DIR}/{script}"],
        env=[
            EnvVarArgs(name="PGHOST", value=server.host),
            EnvVarArgs(name="PGPORT", value=server.port.apply(str)),
            *([EnvVarArgs(name="PGUSER", value=server.admin_user)] if server.admin_user else []),
            EnvVarArgs(name="PGDATABASE", value="postgres"),
            EnvVarArgs(name="PGSSLMODE", value=server.sslmode),
            EnvVarArgs(name="PGCONNECT_TIMEOUT", value="10"),
            EnvVarArgs(name="HOME", value=JOB_HOME),
            *ca_env,
        ],
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
    `bootstrap_sql` (from a ConfigMap; passwords from a Secret) to create one database per application, owned by
    a NOLOGIN role, and its two login roles with random passwords that rotate with overlap on the stack's
    rotation period (`args.rotation`, the IAM keys' scheme: a slot's password is replaced when its period
    comes round again), and each application's connection Secret in its namespace holding the active login
    role and its password, in its chart's format. On a provisioned external server the given roles are
    checked, not created, and rotation is the DBA's. Data-bearing resources are protected. The bootstrap
    re-runs whenever the SQL (which names the period), the server or a password changes (a digest of them is
    on the Job's pod template), and `host` resolves only after it has completed, so whatever uses the host
    waits for the roles and databases to exist.

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
    ca_configmap: str | None
    """With a CA (external server): the ConfigMap (key `ca.crt`) in every application's namespace; mount it at
    CA_DIR, where PGSSLROOTCERT (`server_ca_path()`) points. None: no CA given."""
    login_roles: dict[str, str]
    """Application (`AppDatabase.app`, else its role) -> the role its connection Secret holds (the active one)."""
    credential_annotations: dict[str, pulumi.Output[str]]
    """Application -> a value for its pod template that changes with the credentials its Secret holds (not secret;
    resolves once the Secret is written), so its pods roll onto them."""

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
        self.ca_configmap = self._app_ca_configmaps(name, args) if server.ca else None
        self._password_slots: list[random.RandomPassword] = []
        passwords = self._app_passwords(name, args)
        job = self._bootstrap(name, args, server, passwords)
        # Consumers of the host (connection Secrets, Helm releases, the endpoints contract) wait for
        # the bootstrap: the roles and databases exist before anything tries to use them.
        self.host = pulumi.Output.all(server.host, job.id).apply(lambda v: str(v[0]))
        self.port = server.port
        self.login_roles = {_app_key(app): active_role(args, app) for app in args.apps}
        secrets = self._connection_secrets(name, args, passwords, server.sslmode)
        self.credential_annotations = {
            key: self._credential_annotation(args, key, secret) for key, secret in secrets.items()
        }
        self.databases = {app.role: app.database for app in args.apps}
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "databases": self.databases,
                "admin_password": self.admin_password,
                "sslmode": self.sslmode,
                "ca_configmap": self.ca_configmap,
                "login_roles": self.login_roles,
                "credential_annotations": self.credential_annotations,
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

    def _app_ca_configmaps(self, name: str, args: DatabaseArgs) -> str:
        """The server's CA in each application's namespace (one ConfigMap per namespace), for its clients."""
        done = {args.namespace.name}
        for app in args.apps:
            if app.namespace.name in done:
                continue
            done.add(app.namespace.name)
            ConfigMap(
                f"{name}-server-ca-{app.namespace.name}",
                metadata=ObjectMetaArgs(name=SERVER_CA, namespace=app.namespace.output, labels=labels()),
                data={"ca.crt": args.ca_certificate or ""},
                opts=pulumi.ResourceOptions(parent=self),
            )
        return SERVER_CA

    def _app_passwords(self, name: str, args: DatabaseArgs) -> dict[str, pulumi.Output[str]]:
        """Login role -> its password (secret): one random password per slot of each application, replaced when
        its slot's period changes (a new period of the slot, the keeper); the given ones on a provisioned server."""
        if args.given_passwords is not None:
            return {role: pulumi.Output.secret(pw) for role, pw in args.given_passwords.items()}
        passwords: dict[str, pulumi.Output[str]] = {}
        for app in args.apps:
            for slot in args.rotation.slots:
                login = login_role(app.role, slot.slot)
                pw = random.RandomPassword(
                    f"{name}-{login}-password",
                    length=32,
                    special=False,
                    keepers={"rotation-period": str(slot.generation)},
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self._password_slots.append(pw)
                passwords[login] = pulumi.Output.secret(pw.result)
        return passwords

    def _bootstrap(
        self, name: str, args: DatabaseArgs, server: _Server, passwords: Mapping[str, pulumi.Output[str]]
    ) -> Job:
        """The SQL ConfigMap, the passwords' Secret and the Job applying them once the server exists."""
        child = pulumi.ResourceOptions(parent=self)
        # its own name: the server's selector (and the NetworkPolicy admitting the bootstrap) tell them apart
        job_labels = labels(name=BOOTSTRAP)
        sql = bootstrap_sql(args.apps, args.rotation)
        files = {
            "bootstrap.sql": sql,
            "passwords.sql": password_sql(password_roles(args)),
            "bootstrap.sh": bootstrap_script(password_roles(args)),
        }
        if args.given_passwords is not None:
            sql = verify_script(args.apps)
            files = {"verify.sh": sql}
        sql_map = ConfigMap(
            f"{name}-bootstrap-sql",
            metadata=ObjectMetaArgs(name=BOOTSTRAP_SQL, namespace=args.namespace.output, labels=job_labels),
            data=files,
            # the SQL names the period: it changes with the passwords (a rotation-only update reaches it through them)
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._password_slots),
        )
        job_env: dict[str, pulumi.Input[str]] = {}
        if args.given_passwords is None:
            job_env[ADMIN_PASSWORD_KEY] = self.admin_password
        job_env.update({password_variable(role).upper(): pw for role, pw in passwords.items()})
        job_secret = Secret(
            f"{name}-bootstrap-secret",
            metadata=ObjectMetaArgs(name=BOOTSTRAP, namespace=args.namespace.output, labels=job_labels),
            type="Opaque",
            string_data=job_env,
            opts=child,
        )
        volumes = [
            VolumeArgs(name="sql", config_map=ConfigMapVolumeSourceArgs(name=BOOTSTRAP_SQL)),
            secret_volume("passwords", BOOTSTRAP),
            VolumeArgs(name="home", empty_dir=EmptyDirVolumeSourceArgs(size_limit="16Mi")),
            VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="64Mi")),
        ]
        if server.ca:
            volumes.append(VolumeArgs(name="ca", config_map=ConfigMapVolumeSourceArgs(name=SERVER_CA)))
        # New SQL (a new name) or new inputs (the digest: server, passwords) run the bootstrap again.
        return rerun_on_change_job(
            f"{name}-bootstrap",
            name=f"{BOOTSTRAP}-{hashlib.sha256(sql.encode()).hexdigest()[:8]}",
            namespace=args.namespace,
            labels=job_labels,
            digest_annotation=BOOTSTRAP_INPUTS_ANNOTATION,
            inputs=[
                sql,
                server.host,
                server.port,
                *[passwords[r] for r in password_roles(args)],
                *_external_inputs(args),
            ],
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
    ) -> dict[str, Secret]:
        """Each application's connection Secret in its namespace, in the format its chart reads, with its active
        role and that role's password."""
        secrets = {}
        for app in args.apps:
            role = self.login_roles[_app_key(app)]
            if app.secret_format == "username-password":
                content: Mapping[str, pulumi.Input[str]] = {
                    "username": pulumi.Output.secret(role),
                    "password": passwords[role],
                }
            elif app.secret_format == "sqlalchemy-url":
                url = pulumi.Output.all(passwords[role], self.host, self.port).apply(
                    functools.partial(_sqlalchemy_url, role=role, database=app.database, sslmode=sslmode)
                )
                content = {"connection": pulumi.Output.secret(url)}
            else:
                raise ValueError(f"unknown secret format {app.secret_format!r}")
            secrets[_app_key(app)] = Secret(
                f"{name}-{app.role}-connection",
                metadata=ObjectMetaArgs(name=app.secret_name, namespace=app.namespace.output, labels=labels()),
                type="Opaque",
                string_data=content,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return secrets

    def _credential_annotation(self, args: DatabaseArgs, app: str, secret: Secret) -> pulumi.Output[str]:
        """Changes whenever the application's Secret gets another login role or password: the role and the period
        its password was issued in (a provisioned server: the given role), never the password. Derived from the
        Secret, so a workload carrying it rolls only once the Secret holds the new credentials."""
        role = self.login_roles[app]
        marker = f"{app}/{role}"
        if args.given_passwords is None:
            marker += f"/period{args.rotation.active.generation}"
        # the Secret's id only orders the rollout after the Secret
        return pulumi.Output.unsecret(secret.id.apply(lambda sid: inputs_digest([marker, sid])))


def _app_key(app: AppDatabase) -> str:
    return app.app or app.role
