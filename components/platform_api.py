"""The platform API (services/api) on Kubernetes: trainings and rollbacks on request, events over SSE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_random as random
from pulumi_kubernetes.apps.v1 import (
    Deployment,
    DeploymentSpecArgs,
    DeploymentStrategyArgs,
    RollingUpdateDeploymentArgs,
)
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapEnvSourceArgs,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvFromSourceArgs,
    EnvVarArgs,
    ExecActionArgs,
    HTTPGetActionArgs,
    LifecycleArgs,
    LifecycleHandlerArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    Secret,
    Service,
    ServiceAccount,
    ServicePortArgs,
    ServiceSpecArgs,
    TopologySpreadConstraintArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    HTTPIngressPathArgs,
    HTTPIngressRuleValueArgs,
    IngressBackendArgs,
    IngressRuleArgs,
    IngressServiceBackendArgs,
    IngressSpecArgs,
    IngressTLSArgs,
    ServiceBackendPortArgs,
)
from pulumi_kubernetes.networking.v1 import Ingress as K8sIngress
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget, PodDisruptionBudgetSpecArgs

from components.database import CA_DIR, server_ca_path
from components.jobs import inputs_digest, rerun_on_change_job
from components.namespaces import NamespaceRef
from components.naming import APP_COMPONENT, APP_NAME, DB_CREDENTIALS_ANNOTATION, cluster_url, labels, platform_key
from components.options import inherited_depends_on
from components.pod_security import (
    file_env,
    mlflow_credentials_mount,
    mlflow_credentials_volume,
    restricted_container,
    restricted_pod,
    secret_mount,
    secret_volume,
)
from services.api import API_COMMAND
from services.api.settings import SSLMODES
from services.common import api_rules, contract
from services.common.env_settings import file_variable

NAME = "platform-api"
RUN_AS = 10001
DB_CA_VOLUME = "db-server-ca"
AIRFLOW_UID = 50000  # the Airflow image's user
AIRFLOW_USER_HOME = "/home/airflow-job"  # $HOME and AIRFLOW_HOME of the user Job: an emptyDir (read-only root)
HOME_DIR = "/tmp"  # noqa: S108 - the API's $HOME, on its /tmp emptyDir; MLflow's credentials file is mounted under it
ADMIN_TOKEN_SECRET = "mlops-api-admin-token"
AIRFLOW_CREDENTIALS_SECRET = "mlops-api-airflow-credentials"
AIRFLOW_USER_JOB = "mlops-api-airflow-user"
AIRFLOW_USER_INPUTS_ANNOTATION = platform_key("airflow-user-inputs")
# a digest of the admin tokens the pods accept: a rotation changes the pod template, so the pods roll
ADMIN_TOKENS_ANNOTATION = platform_key("admin-tokens")
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# Exposed through the Ingress: the versioned API, its document and liveness. /readyz stays in the cluster.
PUBLIC_PREFIXES = ("/v1",)
PUBLIC_PATHS = ("/docs", "/openapi.json", "/healthz")


@dataclass(frozen=True)
class PlatformApiConfig:
    """The API's own settings (a stack settings group `api.*` maps onto these)."""

    image: str
    replicas: int = api_rules.REPLICAS
    airflow_username: str = api_rules.AIRFLOW_USER
    reconcile_seconds: float = api_rules.RECONCILE_SECONDS.default
    events_poll_seconds: float = api_rules.EVENTS_POLL_SECONDS.default
    requests: dict[str, str] = field(default_factory=lambda: dict(api_rules.REQUESTS))
    limits: dict[str, str] = field(default_factory=lambda: dict(api_rules.LIMITS))
    token_ttl_days: float = api_rules.TOKEN_TTL_DAYS.default
    token_max_ttl_days: float = api_rules.TOKEN_MAX_TTL_DAYS.default
    rate_limit_per_second: float = api_rules.RATE_LIMIT_PER_SECOND.default
    rate_limit_burst: int = int(api_rules.RATE_LIMIT_BURST.default)
    admin_token_generation: int = 1  # see `admin_token_slots`
    admin_token_keep_previous: bool = False

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("replicas must be >= 1")
        if self.token_ttl_days > self.token_max_ttl_days:
            raise ValueError("token_ttl_days must be <= token_max_ttl_days")
        if self.admin_token_generation < 1:
            raise ValueError("admin_token_generation must be >= 1")
        if ":" not in self.image.rsplit("/", 1)[-1] and "@sha256:" not in self.image:
            raise ValueError(f"image {self.image!r} must be pinned by tag or digest")


@dataclass(frozen=True)
class PlatformApiArgs:
    """Where the API runs and what it reaches. The database role, database and connection Secret (keys
    `username`, `password`) come from the database bootstrap (`components.database.AppDatabase`, format
    `username-password`, in this namespace); the endpoints ConfigMap and the MLflow-credentials Secret must be in
    this namespace too (the `Endpoints` component, with the API's namespace as a consumer)."""

    namespace: NamespaceRef
    config: PlatformApiConfig
    host: str
    ingress_class: str
    cluster_issuer: pulumi.Input[str]
    catalog_json: pulumi.Input[str]  # Catalog.for_airflow(serving_url=...) as JSON
    database_secret: str
    database_name: str
    database_sslmode: str  # "require" for RDS, "disable" in-cluster, database.sslmode external (as the bootstrap)
    airflow_namespace: NamespaceRef  # its Airflow user's Secret and Job run there
    airflow_url: pulumi.Input[str]  # the API server's in-cluster URL
    airflow_image: pulumi.Input[str]  # creates the API's Airflow user (FAB) in the Airflow namespace
    airflow_metadata_secret: str  # Airflow namespace, key `connection`
    endpoints_configmap: str = contract.ENDPOINTS_CONFIGMAP
    mlflow_credentials_secret: str = contract.MLFLOW_CREDENTIALS_SECRET
    database_ca_configmap: str | None = None  # the server's CA (ConfigMap, key ca.crt, in both namespaces); None = none
    labels: dict[str, str] = field(default_factory=dict)
    database_credentials_annotation: pulumi.Input[str] | None = None  # changes with the database credentials

    def __post_init__(self) -> None:
        if self.database_sslmode not in SSLMODES:
            raise ValueError(f"unknown sslmode {self.database_sslmode!r}")


def _env(args: PlatformApiArgs) -> list[EnvVarArgs]:
    c = args.config
    return [
        EnvVarArgs(name="HOME", value=HOME_DIR),
        EnvVarArgs(name=contract.API_DATABASE_NAME.name, value=args.database_name),
        EnvVarArgs(name=contract.API_DATABASE_SSLMODE.name, value=args.database_sslmode),
        *(
            [EnvVarArgs(name=contract.API_DATABASE_SSLROOTCERT.name, value=server_ca_path())]
            if args.database_ca_configmap
            else []
        ),
        # credentials as files (services/common/contract.py): the Secrets mounted, `<NAME>_FILE` names each file;
        # the database role and password are read again for every new connection (a rotation needs no restart)
        file_env(contract.API_DATABASE_USER, args.database_secret, "username"),
        file_env(contract.API_DATABASE_PASSWORD, args.database_secret, "password"),
        file_env(contract.API_ADMIN_TOKEN, ADMIN_TOKEN_SECRET),
        EnvVarArgs(name=contract.API_AIRFLOW_URL.name, value=args.airflow_url),
        EnvVarArgs(name=contract.API_AIRFLOW_USERNAME.name, value=c.airflow_username),
        file_env(contract.API_AIRFLOW_PASSWORD, AIRFLOW_CREDENTIALS_SECRET),
        EnvVarArgs(name=contract.API_PORT_VAR.name, value=str(contract.API_PORT)),
        EnvVarArgs(name=contract.API_RECONCILE_SECONDS.name, value=str(c.reconcile_seconds)),
        EnvVarArgs(name=contract.API_EVENTS_POLL_SECONDS.name, value=str(c.events_poll_seconds)),
        EnvVarArgs(name=contract.API_TOKEN_TTL.name, value=f"{c.token_ttl_days * api_rules.SECONDS_PER_DAY:.0f}"),
        EnvVarArgs(
            name=contract.API_TOKEN_MAX_TTL.name, value=f"{c.token_max_ttl_days * api_rules.SECONDS_PER_DAY:.0f}"
        ),
        EnvVarArgs(name=contract.API_RATE_LIMIT_PER_SECOND.name, value=f"{c.rate_limit_per_second:g}"),
        EnvVarArgs(name=contract.API_RATE_LIMIT_BURST.name, value=str(c.rate_limit_burst)),
        EnvVarArgs(
            name=file_variable(contract.API_ADMIN_TOKEN_PREVIOUS),
            value=contract.secret_file(ADMIN_TOKEN_SECRET, contract.API_ADMIN_TOKEN_PREVIOUS.name),
        ),
        EnvVarArgs(
            name=contract.MODEL_CATALOG.name, value=f"{contract.MODEL_CATALOG_MOUNT}/{contract.MODEL_CATALOG_KEY}"
        ),
    ]


def credential_volumes(args: PlatformApiArgs) -> list[VolumeArgs]:
    """The database connection, admin token and Airflow password Secrets as files, and MLflow's credentials file
    (optional: the Secret is empty when MLflow has no basic auth)."""
    return [
        secret_volume("database", args.database_secret),
        secret_volume("admin-token", ADMIN_TOKEN_SECRET),
        secret_volume("airflow-password", AIRFLOW_CREDENTIALS_SECRET),
        mlflow_credentials_volume(args.mlflow_credentials_secret),
    ]


def _credential_mounts(args: PlatformApiArgs) -> list[VolumeMountArgs]:
    return [
        secret_mount("database", args.database_secret),
        secret_mount("admin-token", ADMIN_TOKEN_SECRET),
        secret_mount("airflow-password", AIRFLOW_CREDENTIALS_SECRET),
        mlflow_credentials_mount(HOME_DIR),
    ]


def _container(args: PlatformApiArgs) -> ContainerArgs:
    c = args.config
    return ContainerArgs(
        name="api",
        image=c.image,
        image_pull_policy="IfNotPresent",
        command=list(API_COMMAND),
        ports=[ContainerPortArgs(name="http", container_port=contract.API_PORT, protocol="TCP")],
        # MLFLOW_TRACKING_URI and MLOPS_DATABASE_HOST among the endpoints
        env_from=[EnvFromSourceArgs(config_map_ref=ConfigMapEnvSourceArgs(name=args.endpoints_configmap))],
        env=_env(args),
        resources=ResourceRequirementsArgs(requests=dict(c.requests), limits=dict(c.limits)),
        startup_probe=ProbeArgs(
            http_get=HTTPGetActionArgs(path="/healthz", port="http"), period_seconds=2, failure_threshold=60
        ),
        liveness_probe=ProbeArgs(
            http_get=HTTPGetActionArgs(path="/healthz", port="http"), period_seconds=10, failure_threshold=3
        ),
        readiness_probe=ProbeArgs(
            http_get=HTTPGetActionArgs(path="/readyz", port="http"),
            period_seconds=5,
            timeout_seconds=5,
            failure_threshold=2,
        ),
        lifecycle=LifecycleArgs(pre_stop=LifecycleHandlerArgs(exec_=ExecActionArgs(command=["sleep", "5"]))),
        security_context=restricted_container(RUN_AS, read_only_root=True),
        volume_mounts=[
            VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108 - emptyDir
            VolumeMountArgs(name="catalog", mount_path=contract.MODEL_CATALOG_MOUNT, read_only=True),
            *_db_ca_mounts(args),
            *_credential_mounts(args),
        ],
    )


def _db_ca_mounts(args: PlatformApiArgs) -> list[VolumeMountArgs]:
    return [VolumeMountArgs(name=DB_CA_VOLUME, mount_path=CA_DIR, read_only=True)] if args.database_ca_configmap else []


def _db_ca_volumes(args: PlatformApiArgs) -> list[VolumeArgs]:
    if not args.database_ca_configmap:
        return []
    return [VolumeArgs(name=DB_CA_VOLUME, config_map=ConfigMapVolumeSourceArgs(name=args.database_ca_configmap))]


def _airflow_user_container(args: PlatformApiArgs) -> ContainerArgs:
    """`airflow users` (FAB) sets the API user's password, creating the user (role User) the first time. The password
    and the metadata database's connection are files of their mounted Secrets: the password reaches the CLI on its
    standard input (its prompt and confirmation), never on its command line; the connection through Airflow's own
    `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD` (a command printing the file). Read-only root: $HOME on an emptyDir."""
    user = args.config.airflow_username
    password = contract.secret_file(AIRFLOW_CREDENTIALS_SECRET, contract.API_AIRFLOW_PASSWORD.name)
    script = (
        f'pw() {{ cat "{password}"; echo; cat "{password}"; echo; }}; '
        'if pw | airflow users reset-password --username "$API_USER"; then exit 0; fi; '
        'pw | exec airflow users create --username "$API_USER" --role User '
        '--firstname mlops --lastname api --email "$API_USER@mlops-platform.invalid"'
    )
    connection = contract.secret_file(args.airflow_metadata_secret, "connection")
    return ContainerArgs(
        name="airflow-user",
        image=args.airflow_image,
        command=["/bin/bash", "-c", script],
        env=[
            EnvVarArgs(name="API_USER", value=user),
            EnvVarArgs(name="HOME", value=AIRFLOW_USER_HOME),
            EnvVarArgs(name="AIRFLOW_HOME", value=AIRFLOW_USER_HOME),
            EnvVarArgs(name="AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", value=f"cat {connection}"),
            EnvVarArgs(name="AIRFLOW__CORE__AUTH_MANAGER", value=FAB_AUTH_MANAGER),
            # libpq's own: the metadata URL's sslmode verifies the server with this CA (as in Airflow's pods)
            *([EnvVarArgs(name="PGSSLROOTCERT", value=server_ca_path())] if args.database_ca_configmap else []),
            EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),
        ],
        resources=ResourceRequirementsArgs(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "1Gi"}
        ),
        security_context=restricted_container(AIRFLOW_UID),
        volume_mounts=[
            secret_mount("airflow-password", AIRFLOW_CREDENTIALS_SECRET),
            secret_mount("metadata", args.airflow_metadata_secret),
            VolumeMountArgs(name="home", mount_path=AIRFLOW_USER_HOME),
            VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108 - emptyDir
            *_db_ca_mounts(args),
        ],
    )


def _airflow_user_volumes(args: PlatformApiArgs) -> list[VolumeArgs]:
    return [
        secret_volume("airflow-password", AIRFLOW_CREDENTIALS_SECRET),
        secret_volume("metadata", args.airflow_metadata_secret),
        VolumeArgs(name="home", empty_dir=EmptyDirVolumeSourceArgs(size_limit="256Mi")),
        VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="256Mi")),
        *_db_ca_volumes(args),
    ]


@dataclass(frozen=True)
class AdminTokenSlots:
    """The two slots of the admin token for generation `g` (`api.adminTokenGeneration`). Slot "a" (the
    original `<name>-admin-token`) serves the odd generations, slot "b" (`<name>-admin-token-b`, from generation 2)
    the even ones; a slot's random token is replaced when its keeper changes, i.e. when the generation moves onto
    it. Raising the generation by one thus creates a new current token and leaves the previous one untouched in
    the other slot, which the API also accepts while `keep_previous` is set."""

    generation: int
    keep_previous: bool = False

    @property
    def current(self) -> str:
        return "a" if self.generation % 2 else "b"

    def keepers(self, slot: str) -> dict[str, str] | None:
        """Slot a keeps no keeper until generation 3 (an existing stack's admin token is not replaced)."""
        latest = self.generation if (slot == self.current) else self.generation - 1
        if slot == "a" and latest <= 1:
            return None
        return {"generation": str(latest)}

    def slots(self) -> tuple[str, ...]:
        return ("a", "b") if self.generation >= 2 else ("a",)

    @property
    def previous(self) -> str | None:
        """The slot whose token is also accepted, if any."""
        return None if not self.keep_previous or self.generation < 2 else ("b" if self.current == "a" else "a")


class PlatformApi(pulumi.ComponentResource):
    """Builds the platform API: a ServiceAccount without API token; a generated admin token (two slots, see
    `AdminTokenSlots`: the previous one is mounted as a file while a rotation keeps it) and the API's
    Airflow password (pulumi-random) in Secrets; the catalog as a ConfigMap mounted where `MLOPS_MODEL_CATALOG`
    points; a Job in the Airflow namespace that creates (or resets) the API's Airflow user; a Deployment (rolling,
    no unavailable pod, spread over nodes, probes on /healthz and /readyz, non-root, read-only root, settings as
    the contract's `MLOPS_API_*` variables, database credentials from the bootstrap's connection Secret); a
    ClusterIP Service; a PodDisruptionBudget; a TLS Ingress exposing /v1, the OpenAPI document and /healthz.
    What may reach it and what it may reach is decided with every other flow of the stack in infra/network.py.

    Exports the attributes below; `deployment` and `service` are handles, not outputs.
    """

    url: pulumi.Output[str]
    """In-cluster URL of the API."""
    external_url: pulumi.Output[str]
    """URL through the TLS Ingress."""
    admin_token: pulumi.Output[str]
    """The admin bearer token (secret)."""

    def __init__(self, name: str, args: PlatformApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:PlatformApi", name, None, opts)
        self._labels = labels(name=NAME, component="platform-api", base=args.labels)
        selector = {APP_NAME: NAME, APP_COMPONENT: "platform-api"}
        admin_previous, airflow_password = self._generated_secrets(name, args.config)
        secrets = self._api_secrets(name, args, admin_previous, airflow_password)
        user_job = self._airflow_user(name, args, airflow_password, opts)
        catalog = self._catalog(name, args)
        account = self._service_account(name, args)
        tokens_digest = pulumi.Output.unsecret(pulumi.Output.all(self.admin_token, admin_previous).apply(inputs_digest))
        self.deployment = self._deployment(
            name, args, selector, account, [*secrets, catalog, user_job], opts, tokens_digest
        )
        self.service = self._service(name, args, selector)
        self._disruption_budget(name, args, selector)
        self._ingress(name, args)
        self.url = cluster_url(self.service.metadata.name, args.namespace.name, contract.API_PORT)
        self.external_url = pulumi.Output.from_input(f"https://{args.host}")
        self.register_outputs({"url": self.url, "external_url": self.external_url, "admin_token": self.admin_token})

    def _generated_secrets(self, name: str, config: PlatformApiConfig) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The admin token (`self.admin_token`, the current slot's), the previous one still accepted ("" when
        none) and the API's Airflow password (pulumi-random), as secret outputs."""
        child = pulumi.ResourceOptions(parent=self)
        plan = AdminTokenSlots(config.admin_token_generation, config.admin_token_keep_previous)
        tokens = {
            slot: random.RandomPassword(
                f"{name}-admin-token" + ("" if slot == "a" else f"-{slot}"),
                length=48,
                special=False,
                keepers=plan.keepers(slot),
                opts=child,
            )
            for slot in plan.slots()
        }
        self.admin_token = pulumi.Output.secret(tokens[plan.current].result)
        previous = tokens[plan.previous].result if plan.previous else pulumi.Output.from_input("")
        generated = random.RandomPassword(f"{name}-airflow-password", length=32, special=False, opts=child)
        return pulumi.Output.secret(previous), pulumi.Output.secret(generated.result)

    def _api_secrets(
        self,
        name: str,
        args: PlatformApiArgs,
        admin_previous: pulumi.Output[str],
        airflow_password: pulumi.Output[str],
    ) -> list[Secret]:
        """The admin tokens (current, and previous during a rotation or empty) and the Airflow password in the
        API's namespace (its pods read them by reference)."""
        return [
            self._secret(
                f"{name}-admin-secret",
                args.namespace,
                ADMIN_TOKEN_SECRET,
                contract.API_ADMIN_TOKEN.name,
                self.admin_token,
                {contract.API_ADMIN_TOKEN_PREVIOUS.name: admin_previous},
            ),
            self._secret(
                f"{name}-airflow-secret",
                args.namespace,
                AIRFLOW_CREDENTIALS_SECRET,
                contract.API_AIRFLOW_PASSWORD.name,
                airflow_password,
            ),
        ]

    def _airflow_user(
        self,
        name: str,
        args: PlatformApiArgs,
        airflow_password: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None,
    ) -> pulumi.Resource:
        """The password's Secret in the Airflow namespace and the Job that creates (or resets) the API's Airflow
        user with it, rerun when the user, the password or the image changes."""
        airflow_secret = self._secret(
            f"{name}-airflow-user-secret",
            args.airflow_namespace,
            AIRFLOW_CREDENTIALS_SECRET,
            contract.API_AIRFLOW_PASSWORD.name,
            airflow_password,
        )
        return rerun_on_change_job(
            f"{name}-airflow-user",
            name=AIRFLOW_USER_JOB,
            namespace=args.airflow_namespace,
            labels=self._labels,
            digest_annotation=AIRFLOW_USER_INPUTS_ANNOTATION,
            inputs=[args.config.airflow_username, airflow_password, args.airflow_image],
            uid=AIRFLOW_UID,
            container=_airflow_user_container(args),
            volumes=_airflow_user_volumes(args),
            backoff_limit=10,
            deadline_seconds=1200,
            parent=self,
            depends_on=[airflow_secret, *inherited_depends_on(opts)],
        )

    def _catalog(self, name: str, args: PlatformApiArgs) -> ConfigMap:
        """The model catalog, mounted where `MLOPS_MODEL_CATALOG` points."""
        return ConfigMap(
            f"{name}-catalog",
            metadata=self._metadata(args, contract.MODEL_CATALOG_CONFIGMAP),
            data={contract.MODEL_CATALOG_KEY: args.catalog_json},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _service_account(self, name: str, args: PlatformApiArgs) -> ServiceAccount:
        return ServiceAccount(
            f"{name}-sa",
            metadata=self._metadata(args),
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _service(self, name: str, args: PlatformApiArgs, selector: dict[str, str]) -> Service:
        return Service(
            f"{name}-service",
            metadata=self._metadata(args),
            spec=ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[ServicePortArgs(name="http", port=contract.API_PORT, target_port="http", protocol="TCP")],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _disruption_budget(self, name: str, args: PlatformApiArgs, selector: dict[str, str]) -> None:
        """One pod may go at a time; with two replicas or more, one always stays."""
        several = args.config.replicas >= 2
        PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self._metadata(args),
            spec=PodDisruptionBudgetSpecArgs(
                selector=LabelSelectorArgs(match_labels=selector),
                min_available=1 if several else None,
                max_unavailable=None if several else 1,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _metadata(self, args: PlatformApiArgs, name: str = NAME, **extra: Any) -> ObjectMetaArgs:
        return ObjectMetaArgs(name=name, namespace=args.namespace.output, labels=self._labels, **extra)

    def _secret(
        self,
        resource: str,
        namespace: NamespaceRef,
        name: str,
        key: str,
        value: pulumi.Input[str],
        more: dict[str, pulumi.Input[str]] | None = None,
    ) -> Secret:
        data = {key: value, **(more or {})}
        return Secret(
            resource,
            metadata=ObjectMetaArgs(name=name, namespace=namespace.output, labels=self._labels),
            type="Opaque",
            string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _deployment(
        self,
        name: str,
        args: PlatformApiArgs,
        selector: dict[str, str],
        account: ServiceAccount,
        before: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None,
        tokens_digest: pulumi.Output[str],
    ) -> Deployment:
        rollout = args.database_credentials_annotation
        pod = PodTemplateSpecArgs(
            metadata=ObjectMetaArgs(
                labels=self._labels,
                annotations={
                    ADMIN_TOKENS_ANNOTATION: tokens_digest,
                    **({DB_CREDENTIALS_ANNOTATION: rollout} if rollout else {}),
                },
            ),
            spec=PodSpecArgs(
                service_account_name=account.metadata.name,
                automount_service_account_token=False,
                termination_grace_period_seconds=20,
                security_context=restricted_pod(RUN_AS),
                containers=[_container(args)],
                volumes=[
                    VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="256Mi")),
                    VolumeArgs(
                        name="catalog", config_map=ConfigMapVolumeSourceArgs(name=contract.MODEL_CATALOG_CONFIGMAP)
                    ),
                    *credential_volumes(args),
                    *_db_ca_volumes(args),
                ],
                topology_spread_constraints=[
                    TopologySpreadConstraintArgs(
                        max_skew=1,
                        topology_key="kubernetes.io/hostname",
                        when_unsatisfiable="ScheduleAnyway",
                        label_selector=LabelSelectorArgs(match_labels=selector),
                    )
                ],
            ),
        )
        return Deployment(
            f"{name}-deployment",
            metadata=self._metadata(args),
            spec=DeploymentSpecArgs(
                replicas=args.config.replicas,
                selector=LabelSelectorArgs(match_labels=selector),
                strategy=DeploymentStrategyArgs(
                    type="RollingUpdate", rolling_update=RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)
                ),
                template=pod,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, *before, *inherited_depends_on(opts)]),
        )

    def _ingress(self, name: str, args: PlatformApiArgs) -> None:
        backend = IngressBackendArgs(
            service=IngressServiceBackendArgs(name=self.service.metadata.name, port=ServiceBackendPortArgs(name="http"))
        )
        paths = [HTTPIngressPathArgs(path=p, path_type="Prefix", backend=backend) for p in PUBLIC_PREFIXES]
        paths += [HTTPIngressPathArgs(path=p, path_type="Exact", backend=backend) for p in PUBLIC_PATHS]
        K8sIngress(
            f"{name}-ingress",
            metadata=self._metadata(args, annotations={"cert-manager.io/cluster-issuer": args.cluster_issuer}),
            spec=IngressSpecArgs(
                ingress_class_name=args.ingress_class,
                tls=[IngressTLSArgs(hosts=[args.host], secret_name=f"{NAME}-tls")],
                rules=[IngressRuleArgs(host=args.host, http=HTTPIngressRuleValueArgs(paths=paths))],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
