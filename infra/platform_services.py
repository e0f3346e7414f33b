"""Composition of the platform's services for one stack: TLS, ingress, MLflow, Airflow with the model catalog, the
endpoints contract and one serving deployment per model (called by infra/platform.py after the data layer)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pulumi

from components.airflow import AUX_IMAGES, AirflowPlatform, AirflowPlatformArgs
from components.endpoints import Endpoints, EndpointsArgs
from components.ingress import IngressController, IngressControllerArgs
from components.logging import ALLOY_IMAGES, LOKI_IMAGES, CentralLogs, CentralLogsArgs, loki_base_url
from components.mlflow import MlflowServer, MlflowServerArgs
from components.monitoring import MONITORING_IMAGES, Monitoring, MonitoringArgs
from components.namespaces import NamespaceRef, PlatformNamespaces
from components.naming import serving_url
from components.platform_api import PlatformApi, PlatformApiArgs, PlatformApiConfig
from components.serving import ServingService, ServingServiceArgs
from components.tls import CERT_MANAGER_IMAGES, TlsIssuers, TlsIssuersArgs
from infra.data_layer import DataLayer
from observability.dashboards import DashboardContext
from observability.rules import RuleSettings, retrain_days_for
from observability.scrape import ScrapeTargets
from services.common import contract, object_store
from services.common.catalog import names
from stacks.settings import ImageRef, StackSettings

Namespaces = dict[str, NamespaceRef]
"""Service -> its namespace (`PlatformNamespaces.refs`)."""


@dataclass
class PlatformServices:
    tls: TlsIssuers
    ingress: IngressController
    mlflow: MlflowServer
    airflow: AirflowPlatform
    endpoints: Endpoints
    serving: dict[str, ServingService]
    """Registered model name -> its serving."""
    api: PlatformApi
    monitoring: Monitoring | None = None
    logs: CentralLogs | None = None
    """Monitoring and central logs; None unless `observability.enabled`."""


def _after(k8s_opts: pulumi.ResourceOptions, *resources: pulumi.Resource) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=list(resources)))


def _images(s: StackSettings, names: Iterable[str]) -> dict[str, ImageRef]:
    """The stack's references of these third-party images (pinned by digest in prod)."""
    return {name: s.third_party_image(name) for name in names}


def _tls(s: StackSettings, opts: pulumi.ResourceOptions) -> TlsIssuers:
    return TlsIssuers(
        "tls",
        TlsIssuersArgs(
            prefix=s.namespace_prefix,
            stack=s.stack,
            install_cert_manager=s.ingress.install_cert_manager,
            cert_manager_namespace=s.ingress.cert_manager_namespace,
            chart_version=s.charts.cert_manager,
            issuer=s.ingress.tls_issuer,
            ingress_class=s.ingress_class,
            acme_email=s.ingress.acme_email,
            acme_server=s.ingress.acme_server,
            images=_images(s, CERT_MANAGER_IMAGES),
        ),
        opts=opts,
    )


def _ingress(s: StackSettings, ns: Namespaces, opts: pulumi.ResourceOptions) -> IngressController:
    return IngressController(
        "ingress",
        IngressControllerArgs(
            install=s.ingress.controller == "traefik",
            namespace=ns["ingress"] if "ingress" in ns else NamespaceRef(s.ingress_namespace),
            class_name=s.ingress_class,
            chart_version=s.charts.traefik,
            service_type=s.ingress.service_type,
            replicas=2 if s.is_prod else 1,
            middleware_namespaces=[ns["serving"]],
            images=_images(s, ["traefik"]),
        ),
        opts=opts,
    )


def _store_region(s: StackSettings) -> str:
    """The region the artifact store's clients sign for: the S3-compatible store's, else the AWS bucket's."""
    return s.artifacts.region if s.artifacts.s3_compatible else s.aws_region


def _mlflow(
    s: StackSettings, ns: Namespaces, data: DataLayer, tls: TlsIssuers, opts: pulumi.ResourceOptions
) -> MlflowServer:
    return MlflowServer(
        "mlflow",
        MlflowServerArgs(
            namespace=ns["mlflow"],
            settings=s.mlflow,
            host=s.host("mlflow"),
            ingress_class=s.ingress_class,
            cluster_issuer=tls.cluster_issuer,
            region=_store_region(s),
            bucket=data.bucket_name,
            artifact_prefix=data.mlflow_prefix,
            s3_secret=data.mlflow_s3_secret,
            db_secret=data.mlflow_db_secret,
            db_host=data.db_host,
            db_port=data.db_port,
            db_sslmode=data.db_sslmode if s.database.mode == "external" else None,
            db_ca_configmap=data.db_ca_configmap,
            image=s.mlflow_image,
            busybox=s.third_party_image("busybox"),
            db_name=data.mlflow_database,
            rotation_annotation=data.rotation_annotations["mlflow"],
            db_credentials_annotation=data.db_credentials("mlflow", "mlflow_auth"),
            auth_db_secret=data.mlflow_auth_db_secret,
            auth_db_name=data.mlflow_auth_database,
            s3_endpoint=data.s3_endpoint,
        ),
        opts=opts,
    )


def endpoint_values(
    s: StackSettings, ns: Namespaces, data: DataLayer, mlflow: MlflowServer
) -> dict[str, pulumi.Input[str]]:
    """The value of every variable of the endpoints contract's ConfigMap (platform-wide: each model's serving URLs
    are in the model catalog)."""
    return {
        contract.MLFLOW_TRACKING_URI.name: mlflow.internal_url,
        contract.MLFLOW_EXTERNAL_URL.name: mlflow.external_url,
        contract.AIRFLOW_URL.name: f"https://{s.host('airflow')}",
        contract.ARTIFACT_BUCKET.name: data.bucket_name,
        contract.MLFLOW_ARTIFACT_PREFIX.name: data.mlflow_prefix,
        contract.AIRFLOW_LOG_PREFIX.name: data.airflow_log_prefix,
        contract.DATABASE_HOST.name: data.db_host,
        contract.MLFLOW_NAMESPACE.name: ns["mlflow"].name,
        contract.AIRFLOW_NAMESPACE.name: ns["airflow"].name,
        contract.SERVING_NAMESPACE.name: ns["serving"].name,
        # MLflow clients (serving, DAGs, training pods) download artifacts through the tracking server, never by
        # presigned URLs straight from the store (their NetworkPolicies reach MLflow, not the store)
        **object_store.proxied_client_env(),
    }


def catalog_document(s: StackSettings) -> dict[str, Any]:
    """The model catalog as Airflow receives it: every model with its settings, names and in-cluster serving URLs
    (the admin API is the same Service), and the profiles."""
    urls = {model: serving_url(model, s.namespace("serving")) for model in s.catalog.models}
    return s.catalog.for_airflow(**{contract.CATALOG_SERVING_URL_KEY: urls, contract.CATALOG_RELOAD_URL_KEY: urls})


def catalog_json(s: StackSettings) -> str:
    """`catalog_document` as the ConfigMap holds it (sorted keys: the same catalog, the same bytes)."""
    return json.dumps(catalog_document(s), indent=2, sort_keys=True) + "\n"


def _endpoints(
    s: StackSettings,
    ns: Namespaces,
    data: DataLayer,
    mlflow: MlflowServer,
    opts: pulumi.ResourceOptions,
) -> Endpoints:
    credentials = (
        (mlflow.client_username, mlflow.client_password)
        if mlflow.client_username is not None and mlflow.client_password is not None
        else None
    )
    return Endpoints(
        "endpoints",
        EndpointsArgs(
            consumers={"airflow": ns["airflow"], "serving": ns["serving"], "api": ns["api"]},
            values=endpoint_values(s, ns, data, mlflow),
            slack_webhook=s.alerts.slack_webhook_url,
            mlflow_credentials=credentials,
        ),
        opts=opts,
    )


def _airflow(
    s: StackSettings, ns: Namespaces, data: DataLayer, tls: TlsIssuers, opts: pulumi.ResourceOptions
) -> AirflowPlatform:
    return AirflowPlatform(
        "airflow",
        AirflowPlatformArgs(
            namespace=ns["airflow"],
            settings=s.airflow,
            image=s.airflow_image,
            catalog=catalog_json(s),
            region=_store_region(s),
            host=s.host("airflow"),
            ingress_class=s.ingress_class,
            cluster_issuer=tls.cluster_issuer,
            metadata_secret=data.airflow_db_secret,
            bucket=data.bucket_name,
            log_prefix=data.airflow_log_prefix,
            logs_connection_secret=data.airflow_logs_secret,
            logs_connection_id=data.airflow_logs_conn_id,
            logs_claim=data.airflow_logs_claim,
            rotation_annotation=data.rotation_annotations["airflow"],
            s3_endpoint=data.s3_endpoint,
            db_ca_configmap=data.db_ca_configmap,
            db_credentials_annotation=data.db_credentials("airflow"),
            images=_images(s, AUX_IMAGES),
        ),
        opts=opts,
    )


def _serving(
    s: StackSettings,
    ns: Namespaces,
    data: DataLayer,
    tls: TlsIssuers,
    opts: pulumi.ResourceOptions,
) -> dict[str, ServingService]:
    """One serving deployment per model of the catalog, named `model-<slug>`, on its serving profile."""
    return {
        model: ServingService(
            names(model)["k8s"],
            ServingServiceArgs(
                namespace=ns["serving"],
                model=model,
                serving=spec.serving,
                profile=s.serving_profile(model),
                image=s.serving_image(model),
                poll_seconds=s.serving.poll_seconds,
                host=s.model_host(model),
                ingress_class=s.ingress_class,
                cluster_issuer=tls.cluster_issuer,
                logs_claim=data.serving_logs_claim,
                rate_limit_middleware=s.ingress.controller == "traefik",
            ),
            opts=opts,
        )
        for model, spec in sorted(s.catalog.models.items())
    }


def _api(
    s: StackSettings,
    ns: Namespaces,
    data: DataLayer,
    tls: TlsIssuers,
    airflow: AirflowPlatform,
    opts: pulumi.ResourceOptions,
) -> PlatformApi:
    """The platform API: the same catalog as Airflow's, its own database from the bootstrap, the DAGs triggered
    through the API server's Service as its own Airflow user."""
    a = s.api
    return PlatformApi(
        "api",
        PlatformApiArgs(
            namespace=ns["api"],
            config=PlatformApiConfig(
                image=s.api_image,
                replicas=a.replicas,
                airflow_username=a.airflow_user,
                reconcile_seconds=a.reconcile_seconds,
                events_poll_seconds=a.events_poll_seconds,
                requests=dict(a.requests),
                limits=dict(a.limits),
                token_ttl_days=a.token_ttl_days,
                token_max_ttl_days=a.token_max_ttl_days,
                rate_limit_per_second=a.rate_limit_per_second,
                rate_limit_burst=a.rate_limit_burst,
                admin_token_generation=a.admin_token_generation,
                admin_token_keep_previous=a.admin_token_keep_previous,
            ),
            host=s.host("api"),
            ingress_class=s.ingress_class,
            cluster_issuer=tls.cluster_issuer,
            catalog_json=catalog_json(s),
            database_secret=data.api_db_secret,
            database_name=data.api_database,
            database_sslmode=data.db_sslmode,  # as the bootstrap connects
            database_ca_configmap=data.db_ca_configmap,
            airflow_namespace=ns["airflow"],
            airflow_url=airflow.internal_url,
            airflow_image=s.airflow_image.reference,
            airflow_metadata_secret=data.airflow_db_secret,
            database_credentials_annotation=data.db_credentials("platform_api"),
        ),
        opts=opts,
    )


def _retrain_days(s: StackSettings) -> dict[str, int]:
    """Training DAG -> days without a successful run before it alerts, for every scheduled model."""
    out = {}
    for model, spec in s.catalog.models.items():
        days = retrain_days_for(spec.training.schedule)
        if days is not None:
            out[names(model)["dag_id"]] = days
    return out


def _logs(s: StackSettings, ns: Namespaces, data: DataLayer, opts: pulumi.ResourceOptions) -> CentralLogs:
    """Loki in the bucket's own prefix (its rotated-key Secret from the data layer) and Alloy over every
    namespace of the stack."""
    o = s.observability
    if data.loki_s3_secret is None or data.loki_prefix is None:
        raise ValueError("central logs need the data layer's Loki consumer (observability.enabled)")
    return CentralLogs(
        "logs",
        CentralLogsArgs(
            stack=s.stack,
            namespace=ns["monitoring"],
            loki_chart_version=s.charts.loki,
            alloy_chart_version=s.charts.alloy,
            region=_store_region(s),
            bucket=data.bucket_name,
            s3_secret=data.loki_s3_secret,
            rotation_annotation=data.rotation_annotations["loki"],
            retention_days=o.log_retention_days,
            storage_size=o.log_storage_size,
            storage_class=o.storage_class,
            collect_namespaces=list(ns.values()),
            prefix=data.loki_prefix,
            s3_endpoint=data.s3_endpoint,
            images=_images(s, [*LOKI_IMAGES, *ALLOY_IMAGES]),
        ),
        opts=opts,
    )


def _monitoring(s: StackSettings, ns: Namespaces, tls: TlsIssuers, opts: pulumi.ResourceOptions) -> Monitoring:
    """kube-prometheus-stack with the platform's monitors, alert rules and dashboards."""
    o = s.observability
    serving_ns, airflow_ns = s.namespace("serving"), s.namespace("airflow")
    webhook = s.alerts.slack_webhook_url
    return Monitoring(
        "monitoring",
        MonitoringArgs(
            stack=s.stack,
            namespace=ns["monitoring"],
            release=f"{s.namespace_prefix}-kps",
            chart_version=s.charts.kube_prometheus_stack,
            retention=o.retention,
            retention_size=o.retention_size,
            storage_size=o.storage_size,
            storage_class=o.storage_class,
            scrape_interval=o.scrape_interval,
            grafana_host=s.host("grafana"),
            ingress_class=s.ingress_class,
            cluster_issuer=tls.cluster_issuer,
            targets=ScrapeTargets(
                serving_namespace=serving_ns,
                mlflow_namespace=s.namespace("mlflow"),
                airflow_namespace=airflow_ns,
                cert_manager_namespace=s.ingress.cert_manager_namespace,
                ingress_namespace=s.ingress_namespace if s.ingress.controller == "traefik" else None,
            ),
            rules=RuleSettings(
                stack_prefix=s.namespace_prefix,
                serving_namespace=serving_ns,
                airflow_namespace=airflow_ns,
                watch_interval_seconds=s.serving.poll_seconds,
                retrain_days=_retrain_days(s),
            ),
            dashboards=DashboardContext(
                stack=s.stack,
                stack_prefix=s.namespace_prefix,
                serving_namespace=serving_ns,
                airflow_namespace=airflow_ns,
            ),
            slack_webhook=webhook.output() if webhook is not None else None,
            loki_url=loki_base_url(s.namespace("monitoring")),
            prometheus_replicas=2 if s.is_prod else 1,
            images=_images(s, MONITORING_IMAGES),
        ),
        opts=opts,
    )


def _volume_ready(data: DataLayer, claim: str) -> list[pulumi.Resource]:
    """What must be done before a pod mounts `claim` (its directory prepared, or its access point)."""
    return [data.volume_ready[claim]] if claim in data.volume_ready else []


def build_services(
    s: StackSettings, k8s_opts: pulumi.ResourceOptions, namespaces: PlatformNamespaces, data: DataLayer
) -> PlatformServices:
    """The services in dependency order: MLflow after TLS and ingress; the endpoints contract after
    MLflow (its URL, its client user); Airflow after the endpoints and the database's bootstrap (its
    migration job needs its role and database); each model's serving after the endpoints; whatever mounts a
    shared volume after its directory is prepared; the platform API after
    the endpoints, the database's bootstrap (its own role and database) and Airflow (its Airflow user's Job
    needs Airflow's migrated metadata database)."""
    ns = namespaces.refs
    tls = _tls(s, k8s_opts)
    ingress = _ingress(s, ns, k8s_opts)
    mlflow = _mlflow(s, ns, data, tls, _after(k8s_opts, tls, ingress))
    endpoints = _endpoints(s, ns, data, mlflow, k8s_opts)
    airflow_volumes = [] if s.airflow.remote_logging else _volume_ready(data, data.airflow_logs_claim)
    airflow = _airflow(s, ns, data, tls, _after(k8s_opts, tls, ingress, endpoints, data.database, *airflow_volumes))
    serving_volumes = _volume_ready(data, data.serving_logs_claim)
    api = _api(s, ns, data, tls, airflow, _after(k8s_opts, tls, ingress, endpoints, data.database, airflow.release))
    serving = _serving(s, ns, data, tls, _after(k8s_opts, tls, ingress, endpoints, *serving_volumes))
    monitoring = logs = None
    if s.observability.enabled:
        logs = _logs(s, ns, data, _after(k8s_opts, data.artifacts))
        monitoring = _monitoring(s, ns, tls, _after(k8s_opts, tls, ingress, logs))
    return PlatformServices(
        tls=tls,
        ingress=ingress,
        mlflow=mlflow,
        airflow=airflow,
        endpoints=endpoints,
        serving=serving,
        api=api,
        monitoring=monitoring,
        logs=logs,
    )


def model_exports(s: StackSettings, services: PlatformServices) -> dict[str, dict[str, Any]]:
    """Per model: its public URL, its in-cluster URL (predictions and admin API), its V2 gRPC targets (through
    Traefik with TLS, when the stack runs Traefik; inside the cluster, plaintext h2c), its DAGs and where it runs."""
    out: dict[str, dict[str, Any]] = {}
    for model, serving in sorted(services.serving.items()):
        derived = names(model)
        out[model] = {
            "url": serving.external_url,
            "internalUrl": serving.url,
            **({"grpcTarget": serving.grpc_target} if serving.grpc_target is not None else {}),
            "internalGrpcTarget": serving.internal_grpc_target,
            "dag": derived["dag_id"],
            "rollbackDag": derived["rollback_dag_id"],
            "namespace": s.namespace("serving"),
            "deployment": serving.deployment_name,
        }
    return out


def model_api_keys(services: PlatformServices) -> pulumi.Output[dict[str, dict[str, str]]]:
    """Model -> its generated API keys by name (models with apiKey authentication only), as one secret."""
    keyed = {model: serving.api_keys for model, serving in sorted(services.serving.items()) if serving.api_keys}
    models = sorted(keyed)
    return pulumi.Output.secret(
        pulumi.Output.all(*(keyed[m] for m in models)).apply(
            lambda keys: {m: k for m, k in zip(models, keys, strict=True) if k}
        )
    )


def export_endpoints(
    s: StackSettings, namespaces: PlatformNamespaces, data: DataLayer, services: PlatformServices
) -> None:
    """The stack's exports: the endpoints contract's values for people and CI, and two secrets: the generated API
    keys of the models with apiKey authentication (`modelApiKeys`: model -> key name -> key) and the platform API's
    admin token (`apiAdminToken`)."""
    pulumi.export("mlflowUrl", services.mlflow.internal_url)
    pulumi.export("mlflowExternalUrl", services.mlflow.external_url)
    pulumi.export("airflowUrl", services.airflow.url)
    pulumi.export("airflowInternalUrl", services.airflow.internal_url)
    pulumi.export("apiUrl", services.api.url)
    pulumi.export("apiExternalUrl", services.api.external_url)
    pulumi.export("apiAdminToken", services.api.admin_token)  # secret
    pulumi.export("models", model_exports(s, services))
    pulumi.export("artifactBucket", data.bucket_name)
    pulumi.export("mlflowArtifactPrefix", data.mlflow_prefix)
    pulumi.export("airflowLogPrefix", data.airflow_log_prefix)
    pulumi.export("databaseHost", data.db_host)
    pulumi.export("namespaces", namespaces.names)
    pulumi.export("ingressClass", s.ingress_class)
    pulumi.export("clusterIssuer", services.tls.cluster_issuer)
    pulumi.export("caCertificate", services.tls.ca_certificate)
    pulumi.export("modelApiKeys", model_api_keys(services))
    if services.monitoring is not None:
        pulumi.export("grafanaUrl", services.monitoring.grafana_url)
