"""The serving of one model of the catalog on Kubernetes: its own Deployment, Service (REST and the V2 gRPC
service), autoscaler, disruption budget, TLS Ingress with its per-client rate limit (a Traefik Middleware), the
gRPC route through Traefik (an IngressRoute, h2c to the pods) and, with apiKey
authentication, its generated keys and the Secret of their hashes, named after the model
(`services.common.catalog.names(model)["k8s"]`). Who may reach its pods is decided with every other flow of the
stack in infra/network.py (its NetworkPolicies)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_random as random
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.apps.v1 import (
    Deployment,
    DeploymentSpecArgs,
    DeploymentStrategyArgs,
    RollingUpdateDeploymentArgs,
)
from pulumi_kubernetes.autoscaling.v2 import CrossVersionObjectReferenceArgs as ScaleTargetArgs
from pulumi_kubernetes.autoscaling.v2 import (
    HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehaviorArgs,
    HorizontalPodAutoscalerSpecArgs,
    HPAScalingRulesArgs,
    MetricSpecArgs,
    MetricTargetArgs,
    ResourceMetricSourceArgs,
)
from pulumi_kubernetes.core.v1 import (
    ConfigMapEnvSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvFromSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    ExecActionArgs,
    HTTPGetActionArgs,
    LifecycleArgs,
    LifecycleHandlerArgs,
    ObjectFieldSelectorArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    Secret,
    SecretVolumeSourceArgs,
    Service,
    ServiceAccount,
    ServicePortArgs,
    ServiceSpecArgs,
    TolerationArgs,
    TopologySpreadConstraintArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    HTTPIngressPathArgs,
    HTTPIngressRuleValueArgs,
    Ingress,
    IngressBackendArgs,
    IngressRuleArgs,
    IngressServiceBackendArgs,
    IngressSpecArgs,
    IngressTLSArgs,
    ServiceBackendPortArgs,
)
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget, PodDisruptionBudgetSpecArgs

from components.ingress import WEBSECURE
from components.namespaces import NamespaceRef
from components.naming import APP_NAME, cluster_host, labels, platform_key, serving_url
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
from services.common import contract
from services.common.catalog import Profile, Serving, names

LOG_MOUNT = "/var/log/mlops-serving"
KEYS_MOUNT = "/etc/mlops-serving/api-keys"  # the keys Secret, mounted whole (not subPath): updates reach the pod
KEYS_FILE = "keys"
RUN_AS = 10001
HOME_DIR = "/tmp"  # noqa: S108 - $HOME on the /tmp emptyDir (caches); MLflow's credentials file is mounted under it
APP = "serving"
COMPONENT = "model-serving"
MODEL_LABEL = platform_key("model")  # the model's slug, on every object and pod of its serving
# Paths the Ingress exposes (Exact), besides the inference protocols' (`contract.V2_SERVER_PATHS`,
# `contract.MLFLOW_SCORING_PATHS`, and the model's V2 paths under one Prefix). The admin API (reload,
# reload-all, blue-green switch) and /metrics are not among them: they are reachable only inside the cluster,
# and the stack's NetworkPolicies (infra/network.py) admit only the ingress controller, Airflow, the API and monitoring.
PUBLIC_PATHS = ("/predict", "/models", "/healthz", "/readyz", "/docs", "/openapi.json")
DOCS_PATHS = ("/docs", "/openapi.json")  # exposed only when the model's serving.publicDocs is on
MIDDLEWARE_API_VERSION = "traefik.io/v1alpha1"
MIDDLEWARES_ANNOTATION = "traefik.ingress.kubernetes.io/router.middlewares"
# The V2 gRPC service (KServe's grpc_predict_v2.proto, package `inference`): every call is an HTTP/2 POST to
# `/inference.GRPCInferenceService/<Method>`, so one path prefix routes the whole service on the model's host.
GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_PATH_PREFIX = f"/{GRPC_SERVICE}/"
GRPC_PORT_NAME = "grpc"
H2C = "kubernetes.io/h2c"  # the Service port's appProtocol: HTTP/2 over cleartext (prior knowledge)


def public_paths(model: str, aliases: Sequence[str], docs: bool = True) -> list[tuple[str, str]]:
    """The Ingress paths of one model's serving, with their path types: exact paths, and one Prefix for the
    model's Open Inference Protocol paths (metadata, ready, infer, and their `/versions/{version}` forms)."""
    exact = [p for p in PUBLIC_PATHS if docs or p not in DOCS_PATHS]
    exact += [contract.variant_predict_path(alias) for alias in aliases]
    exact += [*contract.V2_SERVER_PATHS, *contract.MLFLOW_SCORING_PATHS]
    return [(p, "Exact") for p in exact] + [(contract.v2_model_prefix(model), "Prefix")]


def keys_file(names: Sequence[str], generated: Sequence[str], external: Sequence[str]) -> str:
    """The keys file the service reads: `sha256:<hex> <label>` per accepted key (the generated keys, labelled with
    their names, then the hashes given in the catalog)."""
    lines = ["# SHA-256 of the accepted API keys (services/serving/security.py); written by the Pulumi program"]
    lines += [
        f"sha256:{hashlib.sha256(key.encode()).hexdigest()} {name}" for name, key in zip(names, generated, strict=True)
    ]
    lines += [f"sha256:{digest} keyHashes[{i}]" for i, digest in enumerate(external)]
    return "\n".join(lines) + "\n"


def rate_limit_spec(serving: Serving) -> dict[str, Any]:
    """The Traefik rateLimit middleware of a model: `average` per `period` with `burst`, per client IP (the
    connection's address as Traefik sees it) or per Authorization header. Traefik answers 429 with Retry-After."""
    r = serving.rate_limit
    source: dict[str, Any] = (
        {"requestHeaderName": "Authorization"} if r.by == "authorization" else {"ipStrategy": {"depth": 0}}
    )
    return {"rateLimit": {"average": r.average, "period": f"{r.period}s", "burst": r.burst, "sourceCriterion": source}}


def grpc_route_spec(
    host: str, service: pulumi.Input[str], tls_secret: str, middleware: str | None = None
) -> dict[str, Any]:
    """The Traefik IngressRoute of a model's gRPC service: on the TLS entry point, the model's host and the V2 gRPC
    service's path prefix only, to the Service's `grpc` port as h2c (Traefik speaks HTTP/2 to the pods without
    TLS; clients speak HTTP/2 over TLS to Traefik, with the model's certificate), through the rate limit."""
    route: dict[str, Any] = {
        "kind": "Rule",
        "match": f"Host(`{host}`) && PathPrefix(`{GRPC_PATH_PREFIX}`)",
        "services": [{"name": service, "port": GRPC_PORT_NAME, "scheme": "h2c"}],
    }
    if middleware is not None:
        route["middlewares"] = [{"name": middleware}]
    return {"entryPoints": [WEBSECURE], "routes": [route], "tls": {"secretName": tls_secret}}


@dataclass(frozen=True)
class ServingServiceArgs:
    """One model's serving: the model's registered name, its catalog `serving` entry and the resolved profile
    and image; where it runs. Secret and ConfigMap names default to the endpoints contract."""

    namespace: NamespaceRef
    model: str
    serving: Serving
    profile: Profile
    image: str
    poll_seconds: int
    host: str
    ingress_class: str
    cluster_issuer: pulumi.Input[str]
    logs_claim: pulumi.Input[str]
    # the ingress controller is the stack's Traefik: it reads Middlewares (the rate limit) and IngressRoutes (the gRPC
    # route) in this namespace; otherwise the gRPC service is reachable inside the cluster only
    rate_limit_middleware: bool = True
    endpoints_configmap: str = contract.ENDPOINTS_CONFIGMAP
    reload_token_secret: str = contract.RELOAD_TOKEN_SECRET
    slack_secret: str = contract.SLACK_SECRET
    mlflow_credentials_secret: str = contract.MLFLOW_CREDENTIALS_SECRET
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def k8s_name(self) -> str:
        """The name of every object of this model's serving: `model-<slug>`."""
        return names(self.model)["k8s"]

    @property
    def api_keys(self) -> bool:
        """Callers present a key whose hash is in the keys Secret."""
        return self.serving.auth.mode == "apiKey"

    @property
    def keys_secret(self) -> str:
        return f"{self.k8s_name}-api-keys"

    @property
    def middleware(self) -> str:
        return f"{self.k8s_name}-ratelimit"

    @property
    def grpc_route(self) -> str:
        return f"{self.k8s_name}-grpc"

    @property
    def tls_secret(self) -> str:
        """The certificate of the model's host (cert-manager fills it from the Ingress's annotation)."""
        return f"{self.k8s_name}-tls"

    @property
    def selector(self) -> dict[str, str]:
        """The labels that select this model's serving pods (and no other model's)."""
        return {APP_NAME: APP, MODEL_LABEL: names(self.model)["slug"]}


def _auth_env(args: ServingServiceArgs) -> list[EnvVarArgs]:
    """Who may call (MLOPS_SERVING_AUTH; with apiKey the mounted keys file), the concurrency limit when the model
    sets one, and whether /docs and /openapi.json are served."""
    s = args.serving
    config = s.auth.service_config(args.keys_secret if args.api_keys else None)
    env = [EnvVarArgs(name=contract.SERVING_AUTH.name, value=config.env_value())]
    if args.api_keys:
        env.append(EnvVarArgs(name=contract.SERVING_API_KEYS_FILE.name, value=f"{KEYS_MOUNT}/{KEYS_FILE}"))
    if s.max_in_flight is not None:
        env.append(EnvVarArgs(name=contract.SERVING_MAX_IN_FLIGHT.name, value=str(s.max_in_flight)))
    docs = "false" if s.public_docs is False else "true"
    env.append(EnvVarArgs(name=contract.SERVING_PUBLIC_DOCS.name, value=docs))
    return env


def _env(args: ServingServiceArgs) -> list[EnvVarArgs]:
    """The model and its serving settings as the contract's variables, and the reload token and Slack webhook."""
    s = args.serving
    return [
        EnvVarArgs(
            name="POD_NAME",
            value_from=EnvVarSourceArgs(field_ref=ObjectFieldSelectorArgs(field_path="metadata.name")),
        ),
        EnvVarArgs(name="HOME", value=HOME_DIR),
        EnvVarArgs(name=contract.MODEL_NAME.name, value=args.model),
        EnvVarArgs(name=contract.SERVING_ROUTING.name, value=s.routing.env_value()),
        EnvVarArgs(name=contract.SERVING_ALIASES.name, value=",".join(s.aliases)),
        EnvVarArgs(name=contract.SERVING_SHADOW_AGREEMENT.name, value=s.shadow_agreement.env_value()),
        EnvVarArgs(name=contract.SERVING_POLL_SECONDS.name, value=str(args.poll_seconds)),
        EnvVarArgs(name=contract.SERVING_WORKERS.name, value=str(s.workers)),
        EnvVarArgs(name=contract.SERVING_PORT_VAR.name, value=str(contract.SERVING_PORT)),
        EnvVarArgs(name=contract.SERVING_GRPC_PORT_VAR.name, value=str(contract.SERVING_GRPC_PORT)),
        # one directory per pod on the shared volume: replicas never write the same file
        EnvVarArgs(name=contract.SERVING_LOG_DIR.name, value=f"{LOG_MOUNT}/$(POD_NAME)"),
        *_auth_env(args),
        # credentials as files (services/common/contract.py): the Secrets are mounted, `<NAME>_FILE` names the file
        file_env(contract.RELOAD_TOKEN, args.reload_token_secret),
        file_env(contract.SLACK_WEBHOOK_URL, args.slack_secret),
    ]


def _credential_volumes(args: ServingServiceArgs) -> list[VolumeArgs]:
    """The reload token's and the Slack webhook's Secrets as files, and MLflow's credentials file (optional: the
    Secret is empty when MLflow has no basic auth)."""
    return [
        secret_volume("reload-token", args.reload_token_secret),
        secret_volume("slack-webhook", args.slack_secret),
        mlflow_credentials_volume(args.mlflow_credentials_secret),
    ]


def _credential_mounts(args: ServingServiceArgs) -> list[VolumeMountArgs]:
    """Where `_credential_volumes` appear: the contract's paths, and MLflow's own file under $HOME (HOME_DIR)."""
    return [
        secret_mount("reload-token", args.reload_token_secret),
        secret_mount("slack-webhook", args.slack_secret),
        mlflow_credentials_mount(HOME_DIR),
    ]


def _container(args: ServingServiceArgs) -> ContainerArgs:
    """The serving container: REST (`http`) and gRPC (`grpc`) ports, the profile's requests and limits (GPUs in
    both), probes, non-root, read-only root. The probes are HTTP on REST only: the gRPC service runs in the same
    process, and it implements the V2 protocol's ServerLive/ServerReady, not grpc.health.v1 (which a kubelet `grpc`
    probe calls)."""
    resources = args.profile.k8s_resources()
    return ContainerArgs(
        name="serving",
        image=args.image,
        image_pull_policy="IfNotPresent",
        ports=[
            ContainerPortArgs(name="http", container_port=contract.SERVING_PORT, protocol="TCP"),
            ContainerPortArgs(name=GRPC_PORT_NAME, container_port=contract.SERVING_GRPC_PORT, protocol="TCP"),
        ],
        env_from=[EnvFromSourceArgs(config_map_ref=ConfigMapEnvSourceArgs(name=args.endpoints_configmap))],
        env=_env(args),
        resources=ResourceRequirementsArgs(requests=resources["requests"], limits=resources["limits"]),
        startup_probe=ProbeArgs(
            http_get=HTTPGetActionArgs(path="/healthz", port="http"), period_seconds=2, failure_threshold=60
        ),
        liveness_probe=ProbeArgs(
            http_get=HTTPGetActionArgs(path="/healthz", port="http"), period_seconds=10, failure_threshold=3
        ),
        readiness_probe=ProbeArgs(
            http_get=HTTPGetActionArgs(path="/readyz", port="http"), period_seconds=5, failure_threshold=2
        ),
        # let the endpoints controller take the pod out of rotation before it stops
        lifecycle=LifecycleArgs(pre_stop=LifecycleHandlerArgs(exec_=ExecActionArgs(command=["sleep", "5"]))),
        security_context=restricted_container(RUN_AS, read_only_root=True),
        volume_mounts=[
            VolumeMountArgs(name="logs", mount_path=LOG_MOUNT),
            VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108 - emptyDir
            *([VolumeMountArgs(name="api-keys", mount_path=KEYS_MOUNT, read_only=True)] if args.api_keys else []),
            *_credential_mounts(args),
        ],
    )


def _pod(args: ServingServiceArgs, pod_labels: dict[str, str], account: ServiceAccount) -> PodTemplateSpecArgs:
    """The pod: scraped by Prometheus on the REST port (/metrics; the gRPC port serves no metrics), log claim and
    /tmp volumes, the profile's node selector, tolerations and priority class, spread over nodes."""
    profile = args.profile
    return PodTemplateSpecArgs(
        metadata=ObjectMetaArgs(
            labels=pod_labels,
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(contract.SERVING_PORT),
                "prometheus.io/path": "/metrics",
            },
        ),
        spec=PodSpecArgs(
            service_account_name=account.metadata.name,
            automount_service_account_token=False,
            termination_grace_period_seconds=30,
            security_context=restricted_pod(RUN_AS),
            containers=[_container(args)],
            volumes=[
                VolumeArgs(
                    name="logs",
                    persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(claim_name=args.logs_claim),
                ),
                VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="2Gi")),
                *(
                    [VolumeArgs(name="api-keys", secret=SecretVolumeSourceArgs(secret_name=args.keys_secret))]
                    if args.api_keys
                    else []
                ),
                *_credential_volumes(args),
            ],
            node_selector=dict(profile.node_selector) or None,
            tolerations=[
                TolerationArgs(
                    key=t.key,
                    operator=t.operator,
                    value=t.value,
                    effect=t.effect,
                    toleration_seconds=t.toleration_seconds,
                )
                for t in profile.tolerations
            ]
            or None,
            priority_class_name=profile.priority_class_name,
            topology_spread_constraints=[
                TopologySpreadConstraintArgs(
                    max_skew=1,
                    topology_key="kubernetes.io/hostname",
                    when_unsatisfiable="ScheduleAnyway",
                    label_selector=LabelSelectorArgs(match_labels=args.selector),
                )
            ],
        ),
    )


class ServingService(pulumi.ComponentResource):
    """Builds the serving of one model, every object named `model-<slug>`: a ServiceAccount without API token, a
    Deployment (rolling update with no unavailable pod, no replica count: the autoscaler owns it; probes on
    /healthz (liveness, startup) and /readyz (readiness), the model's name, aliases, routing and workers in its
    env, requests, limits, GPUs, node selector, tolerations and priority class from the model's serving profile,
    non-root with a read-only root filesystem, per-pod log directory on the NFS claim, environment from the
    endpoints ConfigMap and the reload-token, Slack and MLflow-credentials Secrets), a ClusterIP Service (`http`
    for REST, `grpc` for the V2 gRPC service of the same process, appProtocol h2c), a
    HorizontalPodAutoscaler between the model's replica bounds, a PodDisruptionBudget, a TLS Ingress on the
    model's host exposing only the public paths (/docs and /openapi.json only with `publicDocs`) behind the
    model's per-client rate limit (a Traefik `Middleware` named in the Ingress's router.middlewares annotation),
    and with the stack's Traefik a TLS IngressRoute on the same host for the gRPC service's path prefix only, h2c
    to the `grpc` port, behind the same rate limit. Authentication from the
    model's `serving.auth` (MLOPS_SERVING_AUTH): with apiKey, one generated key per name in `keys`
    (pulumi-random) and a Secret holding only their SHA-256 hashes (and the catalog's `keyHashes`), mounted as the
    keys file that the service re-reads when it changes, so keys rotate without a restart.

    Exports the attributes below; `deployment` and `service` are handles, not outputs.
    """

    url: pulumi.Output[str]
    """In-cluster URL of the model's serving (predictions)."""
    grpc_target: pulumi.Output[str] | None
    """`<host>:443`: the V2 gRPC service through Traefik (TLS); None when the controller is not the stack's Traefik."""
    internal_grpc_target: pulumi.Output[str]
    """The V2 gRPC service inside the cluster, `cluster_host(service, namespace):8081` (plaintext h2c)."""
    reload_url: pulumi.Output[str]
    """In-cluster base URL of its admin API."""
    external_url: pulumi.Output[str]
    """URL through the TLS Ingress."""
    deployment_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    api_keys: pulumi.Output[dict[str, str]]
    """apiKey: key name -> the generated key (secret); empty otherwise."""

    def __init__(self, name: str, args: ServingServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:ServingService", name, None, opts)
        slug = names(args.model)["slug"]
        object_labels = labels(name=APP, component=COMPONENT, base=args.labels, model=slug)
        account = self._service_account(name, args, object_labels)
        keys_secret = self._api_keys(name, args, object_labels)
        self.deployment: Deployment = self._deployment(name, args, object_labels, account, keys_secret, opts)
        self.service: Service = self._service(name, args, object_labels)
        self._autoscaler(name, args, object_labels)
        self._disruption_budget(name, args, object_labels)
        middleware = self._rate_limit(name, args, object_labels, opts) if args.rate_limit_middleware else None
        self._ingress(name, args, object_labels, middleware)
        route = self._grpc_route(name, args, object_labels, middleware, opts) if args.rate_limit_middleware else None
        # the naming rule's URL, resolved once the Service exists (its name is that rule's `model-<slug>`)
        self.url = self.service.metadata.name.apply(lambda _: serving_url(args.model, args.namespace.name))
        self.reload_url = self.url
        self.external_url = pulumi.Output.from_input(f"https://{args.host}")
        self.grpc_target = route.urn.apply(lambda _: f"{args.host}:443") if route is not None else None
        self.internal_grpc_target = pulumi.Output.concat(
            cluster_host(self.service.metadata.name, args.namespace.name), f":{contract.SERVING_GRPC_PORT}"
        )
        self.deployment_name = self.deployment.metadata.name
        self.service_name = self.service.metadata.name
        self.register_outputs(
            {
                "url": self.url,
                "reload_url": self.reload_url,
                "external_url": self.external_url,
                "grpc_target": self.grpc_target,
                "internal_grpc_target": self.internal_grpc_target,
                "deployment_name": self.deployment_name,
                "service_name": self.service_name,
                "api_keys": self.api_keys,
            }
        )

    def _metadata(self, args: ServingServiceArgs, object_labels: dict[str, str], **extra: Any) -> ObjectMetaArgs:
        return ObjectMetaArgs(name=args.k8s_name, namespace=args.namespace.output, labels=object_labels, **extra)

    def _service_account(self, name: str, args: ServingServiceArgs, object_labels: dict[str, str]) -> ServiceAccount:
        return ServiceAccount(
            f"{name}-sa",
            metadata=self._metadata(args, object_labels),
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _api_keys(self, name: str, args: ServingServiceArgs, object_labels: dict[str, str]) -> Secret | None:
        """apiKey: one generated key per name (its plaintext only in the `api_keys` output, secret) and the Secret
        of the accepted hashes; sets `api_keys` (empty without apiKey)."""
        if not args.api_keys:
            self.api_keys = pulumi.Output.secret({})
            return None
        auth = args.serving.auth
        generated = [
            random.RandomPassword(
                f"{name}-api-key-{key}", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result
            for key in auth.keys
        ]
        self.api_keys = pulumi.Output.secret(
            pulumi.Output.all(*generated).apply(lambda keys: dict(zip(auth.keys, keys, strict=True)))
        )
        content: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(*generated).apply(lambda keys: keys_file(auth.keys, keys, auth.hashes()))
        )
        return Secret(
            f"{name}-api-keys",
            metadata=ObjectMetaArgs(name=args.keys_secret, namespace=args.namespace.output, labels=object_labels),
            type="Opaque",
            string_data={KEYS_FILE: content},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _deployment(
        self,
        name: str,
        args: ServingServiceArgs,
        object_labels: dict[str, str],
        account: ServiceAccount,
        keys_secret: Secret | None,
        opts: pulumi.ResourceOptions | None,
    ) -> Deployment:
        """Rolling update with no unavailable pod; waits for what the component was told to wait for. No
        `replicas`: the HorizontalPodAutoscaler owns the count, so an update never scales a busy model down."""
        return Deployment(
            f"{name}-deployment",
            metadata=self._metadata(args, object_labels),
            spec=DeploymentSpecArgs(
                selector=LabelSelectorArgs(match_labels=args.selector),
                strategy=DeploymentStrategyArgs(
                    type="RollingUpdate", rolling_update=RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)
                ),
                template=_pod(args, object_labels, account),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[account, *([keys_secret] if keys_secret else []), *inherited_depends_on(opts)],
            ),
        )

    def _service(self, name: str, args: ServingServiceArgs, object_labels: dict[str, str]) -> Service:
        return Service(
            f"{name}-service",
            metadata=self._metadata(args, object_labels),
            spec=ServiceSpecArgs(
                type="ClusterIP",
                selector=args.selector,
                ports=[
                    ServicePortArgs(name="http", port=contract.SERVING_PORT, target_port="http", protocol="TCP"),
                    ServicePortArgs(
                        name=GRPC_PORT_NAME,
                        port=contract.SERVING_GRPC_PORT,
                        target_port=GRPC_PORT_NAME,
                        protocol="TCP",
                        app_protocol=H2C,
                    ),
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _autoscaler(self, name: str, args: ServingServiceArgs, object_labels: dict[str, str]) -> None:
        """Scales the Deployment between the model's bounds on CPU (70 %), down slowly (5 minutes)."""
        HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=self._metadata(args, object_labels),
            spec=HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=ScaleTargetArgs(
                    api_version="apps/v1", kind="Deployment", name=self.deployment.metadata.name
                ),
                min_replicas=args.serving.min_replicas,
                max_replicas=args.serving.max_replicas,
                metrics=[
                    MetricSpecArgs(
                        type="Resource",
                        resource=ResourceMetricSourceArgs(
                            name="cpu", target=MetricTargetArgs(type="Utilization", average_utilization=70)
                        ),
                    )
                ],
                behavior=HorizontalPodAutoscalerBehaviorArgs(
                    scale_down=HPAScalingRulesArgs(stabilization_window_seconds=300)
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _disruption_budget(self, name: str, args: ServingServiceArgs, object_labels: dict[str, str]) -> None:
        several = args.serving.min_replicas >= 2
        PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self._metadata(args, object_labels),
            spec=PodDisruptionBudgetSpecArgs(
                selector=LabelSelectorArgs(match_labels=args.selector),
                # one pod may always be drained; with two or more replicas one must stay up
                min_available=1 if several else None,
                max_unavailable=None if several else 1,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _rate_limit(
        self, name: str, args: ServingServiceArgs, object_labels: dict[str, str], opts: pulumi.ResourceOptions | None
    ) -> CustomResource:
        """The model's Traefik rateLimit Middleware (after Traefik and its CRDs: what the component waits for)."""
        return CustomResource(
            f"{name}-ratelimit",
            api_version=MIDDLEWARE_API_VERSION,
            kind="Middleware",
            metadata=ObjectMetaArgs(name=args.middleware, namespace=args.namespace.output, labels=object_labels),
            spec=rate_limit_spec(args.serving),
            opts=pulumi.ResourceOptions(parent=self, depends_on=inherited_depends_on(opts)),
        )

    def _ingress(
        self,
        name: str,
        args: ServingServiceArgs,
        object_labels: dict[str, str],
        middleware: CustomResource | None,
    ) -> None:
        """TLS Ingress exposing only the public paths (`public_paths`), through the rate-limit Middleware
        (`<namespace>-<name>@kubernetescrd`, Traefik's name of a Middleware of its CRD provider)."""
        backend = IngressBackendArgs(
            service=IngressServiceBackendArgs(name=self.service.metadata.name, port=ServiceBackendPortArgs(name="http"))
        )
        docs = args.serving.public_docs is not False
        paths = [
            HTTPIngressPathArgs(path=path, path_type=path_type, backend=backend)
            for path, path_type in public_paths(args.model, args.serving.aliases, docs)
        ]
        annotations: dict[str, pulumi.Input[str]] = {"cert-manager.io/cluster-issuer": args.cluster_issuer}
        if middleware is not None:
            annotations[MIDDLEWARES_ANNOTATION] = f"{args.namespace.name}-{args.middleware}@kubernetescrd"
        Ingress(
            f"{name}-ingress",
            metadata=self._metadata(args, object_labels, annotations=annotations),
            spec=IngressSpecArgs(
                ingress_class_name=args.ingress_class,
                tls=[IngressTLSArgs(hosts=[args.host], secret_name=args.tls_secret)],
                rules=[IngressRuleArgs(host=args.host, http=HTTPIngressRuleValueArgs(paths=paths))],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[middleware] if middleware else None),
        )

    def _grpc_route(
        self,
        name: str,
        args: ServingServiceArgs,
        object_labels: dict[str, str],
        middleware: CustomResource | None,
        opts: pulumi.ResourceOptions | None,
    ) -> CustomResource:
        """The gRPC route (`grpc_route_spec`), a Traefik IngressRoute: a standard Ingress cannot say h2c for one
        port of a Service (Traefik's serversscheme annotation applies to every port, REST included). It uses the
        certificate of the model's Ingress (same host) and waits for Traefik and its CRDs, like the Middleware."""
        return CustomResource(
            f"{name}-grpc",
            api_version=MIDDLEWARE_API_VERSION,
            kind="IngressRoute",
            metadata=ObjectMetaArgs(name=args.grpc_route, namespace=args.namespace.output, labels=object_labels),
            spec=grpc_route_spec(
                args.host, self.service.metadata.name, args.tls_secret, args.middleware if middleware else None
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*([middleware] if middleware else []), *inherited_depends_on(opts)]
            ),
        )
