"""The model-serving service on Kubernetes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
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
    SecretEnvSourceArgs,
    SecretKeySelectorArgs,
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
    NetworkPolicy,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
    ServiceBackendPortArgs,
)
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget, PodDisruptionBudgetSpecArgs

from components.options import inherited_depends_on
from components.pod_security import restricted_container, restricted_pod
from services.common import contract
from stacks.settings import ServingSettings

LOG_MOUNT = "/var/log/mlops-serving"
RUN_AS = 10001
# Paths the Ingress exposes (Exact). The admin API (reload, reload-all, blue-green switch) and
# /metrics are not among them: they are reachable only inside the cluster, and the NetworkPolicy
# admits only the ingress controller and the Airflow namespace.
PUBLIC_PATHS = ("/predict", "/models", "/healthz", "/readyz", "/docs", "/openapi.json")


def public_paths(aliases: Sequence[str]) -> list[str]:
    return [*PUBLIC_PATHS, *(f"/variants/{alias}/predict" for alias in aliases)]


@dataclass(frozen=True)
class ServingServiceArgs:
    """Where and how the serving service runs. Object names default to the endpoints contract."""

    namespace: pulumi.Input[str]
    settings: ServingSettings
    host: str
    ingress_class: str
    cluster_issuer: pulumi.Input[str]
    controller_namespace: pulumi.Input[str]
    airflow_namespace: pulumi.Input[str]
    logs_claim: pulumi.Input[str]
    endpoints_configmap: str = contract.ENDPOINTS_CONFIGMAP
    reload_token_secret: str = contract.RELOAD_TOKEN_SECRET
    slack_secret: str = contract.SLACK_SECRET
    mlflow_credentials_secret: str = contract.MLFLOW_CREDENTIALS_SECRET
    labels: dict[str, str] = field(default_factory=dict)


class ServingService(pulumi.ComponentResource):
    """Builds the serving service: a ServiceAccount without API token, a Deployment (rolling update
    with no unavailable pod, probes on /healthz (liveness, startup) and /readyz (readiness),
    resources and optional GPUs from the chosen model profile, non-root with a read-only root
    filesystem, per-pod log directory on the NFS claim, environment from the endpoints ConfigMap
    and the reload-token, Slack and MLflow-credentials Secrets), a ClusterIP Service, a HorizontalPodAutoscaler, a
    PodDisruptionBudget, a TLS Ingress exposing only the public paths, and a NetworkPolicy
    admitting only the ingress controller's and Airflow's namespaces.

    Exports `url` (in-cluster), `reload_url` (in-cluster admin base URL), `external_url`,
    `deployment_name` and `service_name`.
    """

    def __init__(self, name: str, args: ServingServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:ServingService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        profile = s.profiles[s.profile]
        app_labels = {"app.kubernetes.io/name": "serving", "app.kubernetes.io/component": "model-serving"}
        labels = {**args.labels, **app_labels, "app.kubernetes.io/part-of": "mlops-platform"}
        port = contract.SERVING_PORT

        account = ServiceAccount(
            f"{name}-sa",
            metadata=ObjectMetaArgs(name="serving", namespace=args.namespace, labels=labels),
            automount_service_account_token=False,
            opts=child,
        )

        limits = {"cpu": profile.cpu, "memory": profile.memory}
        if profile.gpus:
            limits["nvidia.com/gpu"] = str(profile.gpus)
        env = [
            EnvVarArgs(
                name="POD_NAME",
                value_from=EnvVarSourceArgs(field_ref=ObjectFieldSelectorArgs(field_path="metadata.name")),
            ),
            EnvVarArgs(name="HOME", value="/tmp"),  # noqa: S108 - an emptyDir of this pod
            EnvVarArgs(name=contract.SERVING_ROUTING.name, value=s.routing.env_value()),
            EnvVarArgs(name=contract.SERVING_ALIASES.name, value=",".join(s.aliases)),
            EnvVarArgs(name=contract.SERVING_POLL_SECONDS.name, value=str(s.poll_seconds)),
            EnvVarArgs(name=contract.SERVING_WORKERS.name, value=str(s.workers)),
            EnvVarArgs(name=contract.SERVING_PORT_VAR.name, value=str(port)),
            # one directory per pod on the shared volume: replicas never write the same file
            EnvVarArgs(name=contract.SERVING_LOG_DIR.name, value=f"{LOG_MOUNT}/$(POD_NAME)"),
            EnvVarArgs(
                name=contract.RELOAD_TOKEN.name,
                value_from=EnvVarSourceArgs(
                    secret_key_ref=SecretKeySelectorArgs(name=args.reload_token_secret, key=contract.RELOAD_TOKEN.name)
                ),
            ),
            EnvVarArgs(
                name=contract.SLACK_WEBHOOK_URL.name,
                value_from=EnvVarSourceArgs(
                    secret_key_ref=SecretKeySelectorArgs(
                        name=args.slack_secret, key=contract.SLACK_WEBHOOK_URL.name, optional=True
                    )
                ),
            ),
        ]
        container = ContainerArgs(
            name="serving",
            image=f"{s.image}:{s.image_tag}",
            image_pull_policy="IfNotPresent",
            ports=[ContainerPortArgs(name="http", container_port=port, protocol="TCP")],
            env_from=[
                EnvFromSourceArgs(config_map_ref=ConfigMapEnvSourceArgs(name=args.endpoints_configmap)),
                # MLflow's user when MLflow has basic auth (the Secret is empty otherwise)
                EnvFromSourceArgs(secret_ref=SecretEnvSourceArgs(name=args.mlflow_credentials_secret)),
            ],
            env=env,
            resources=ResourceRequirementsArgs(requests={"cpu": profile.cpu, "memory": profile.memory}, limits=limits),
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
            ],
        )
        self.deployment = Deployment(
            f"{name}-deployment",
            metadata=ObjectMetaArgs(name="serving", namespace=args.namespace, labels=labels),
            spec=DeploymentSpecArgs(
                replicas=s.min_replicas,
                selector=LabelSelectorArgs(match_labels=app_labels),
                strategy=DeploymentStrategyArgs(
                    type="RollingUpdate", rolling_update=RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)
                ),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(
                        labels=labels,
                        annotations={
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(port),
                            "prometheus.io/path": "/metrics",
                        },
                    ),
                    spec=PodSpecArgs(
                        service_account_name=account.metadata.name,
                        automount_service_account_token=False,
                        termination_grace_period_seconds=30,
                        security_context=restricted_pod(RUN_AS),
                        containers=[container],
                        volumes=[
                            VolumeArgs(
                                name="logs",
                                persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(
                                    claim_name=args.logs_claim
                                ),
                            ),
                            VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="2Gi")),
                        ],
                        node_selector=dict(profile.node_selector) or None,
                        tolerations=[
                            TolerationArgs(
                                key=t.get("key"),
                                operator=t.get("operator"),
                                value=t.get("value"),
                                effect=t.get("effect"),
                            )
                            for t in profile.tolerations
                        ]
                        or None,
                        topology_spread_constraints=[
                            TopologySpreadConstraintArgs(
                                max_skew=1,
                                topology_key="kubernetes.io/hostname",
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=LabelSelectorArgs(match_labels=app_labels),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, *inherited_depends_on(opts)]),
        )
        self.service = Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(name=contract.SERVING_SERVICE, namespace=args.namespace, labels=labels),
            spec=ServiceSpecArgs(
                type="ClusterIP",
                selector=app_labels,
                ports=[ServicePortArgs(name="http", port=port, target_port="http", protocol="TCP")],
            ),
            opts=child,
        )
        HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=ObjectMetaArgs(name="serving", namespace=args.namespace, labels=labels),
            spec=HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=ScaleTargetArgs(
                    api_version="apps/v1", kind="Deployment", name=self.deployment.metadata.name
                ),
                min_replicas=s.min_replicas,
                max_replicas=s.max_replicas,
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
            opts=child,
        )
        PodDisruptionBudget(
            f"{name}-pdb",
            metadata=ObjectMetaArgs(name="serving", namespace=args.namespace, labels=labels),
            spec=PodDisruptionBudgetSpecArgs(
                selector=LabelSelectorArgs(match_labels=app_labels),
                # one pod may always be drained; with two or more replicas one must stay up
                min_available=1 if s.min_replicas >= 2 else None,
                max_unavailable=None if s.min_replicas >= 2 else 1,
            ),
            opts=child,
        )
        backend = IngressBackendArgs(
            service=IngressServiceBackendArgs(name=self.service.metadata.name, port=ServiceBackendPortArgs(name="http"))
        )
        Ingress(
            f"{name}-ingress",
            metadata=ObjectMetaArgs(
                name="serving",
                namespace=args.namespace,
                labels=labels,
                annotations={"cert-manager.io/cluster-issuer": args.cluster_issuer},
            ),
            spec=IngressSpecArgs(
                ingress_class_name=args.ingress_class,
                tls=[IngressTLSArgs(hosts=[args.host], secret_name="serving-tls")],
                rules=[
                    IngressRuleArgs(
                        host=args.host,
                        http=HTTPIngressRuleValueArgs(
                            paths=[
                                HTTPIngressPathArgs(path=p, path_type="Exact", backend=backend)
                                for p in public_paths(s.aliases)
                            ]
                        ),
                    )
                ],
            ),
            opts=child,
        )

        def from_namespace(ns: pulumi.Input[str]) -> NetworkPolicyPeerArgs:
            return NetworkPolicyPeerArgs(
                namespace_selector=LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": ns})
            )

        NetworkPolicy(
            f"{name}-netpol",
            metadata=ObjectMetaArgs(name="serving", namespace=args.namespace, labels=labels),
            spec=NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(match_labels=app_labels),
                policy_types=["Ingress"],
                ingress=[
                    NetworkPolicyIngressRuleArgs(
                        from_=[from_namespace(args.controller_namespace), from_namespace(args.airflow_namespace)],
                        ports=[NetworkPolicyPortArgs(port=port, protocol="TCP")],
                    )
                ],
            ),
            opts=child,
        )

        internal = pulumi.Output.concat(
            "http://",
            self.service.metadata.name,
            ".",
            pulumi.Output.from_input(args.namespace),
            f".svc.cluster.local:{port}",
        )
        self.url = internal
        self.reload_url = internal
        self.external_url = pulumi.Output.from_input(f"https://{args.host}")
        self.register_outputs(
            {
                "url": self.url,
                "reload_url": self.reload_url,
                "external_url": self.external_url,
                "deployment_name": self.deployment.metadata.name,
                "service_name": self.service.metadata.name,
            }
        )
