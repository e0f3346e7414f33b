"""`StackSettings`: every settings group of a stack, and what the program derives from them (namespaces, hosts,
images)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common import git_access
from services.common.catalog import DEFAULT_PROFILES, Catalog, Profile, names
from stacks.settings.airflow import AirflowSettings
from stacks.settings.alerts import AlertSettings
from stacks.settings.api import ApiSettings
from stacks.settings.artifacts import ArtifactSettings
from stacks.settings.charts import ChartSettings
from stacks.settings.database import DatabaseSettings
from stacks.settings.engine import ENVIRONMENTS, PROJECT, Environment, SettingsError, setting
from stacks.settings.images import ImageRef, ImagesSettings, ProfileBuild
from stacks.settings.ingress import IngressSettings
from stacks.settings.kubernetes import KubernetesSettings
from stacks.settings.mlflow import MlflowSettings
from stacks.settings.network import NetworkSettings
from stacks.settings.nfs import NfsSettings
from stacks.settings.observability import ObservabilitySettings
from stacks.settings.retention import RetentionSettings
from stacks.settings.serving import ServingSettings

# Hosts of the platform's own services under ingress.domain: no model may take them.
PLATFORM_HOSTS = ("mlflow", "airflow", "api")
MODELS_SUBDOMAIN = "models"


@dataclass(frozen=True)
class StackSettings:
    """Everything the program reads from the stack's configuration."""

    stack: str
    source: str
    kubernetes: KubernetesSettings
    ingress: IngressSettings
    artifacts: ArtifactSettings
    database: DatabaseSettings
    nfs: NfsSettings
    mlflow: MlflowSettings
    airflow: AirflowSettings
    serving: ServingSettings
    api: ApiSettings
    alerts: AlertSettings
    charts: ChartSettings
    images: ImagesSettings
    retention: RetentionSettings
    network: NetworkSettings
    catalog: Catalog
    """The model catalog: `models` validated with `profiles` (services/common/catalog.py), parsed once, every
    profile image resolved to a reference."""
    profile_builds: Mapping[str, ProfileBuild]
    """The profile images built from this repository's Dockerfiles, by image name (`profile_builds`)."""
    observability: ObservabilitySettings
    models: Mapping[str, Any] = setting(
        "models",
        "the model catalog: registered model name -> {training, gate, serving}; every entry is trained by its "
        "own DAGs and served by its own deployment (docs/models.md)",
        required=True,
    )
    profiles: Mapping[str, Any] = setting(
        "profiles",
        "resource profiles of the training and serving pods: name -> {images, requests, limits, gpus, "
        "nodeSelector, tolerations, priorityClassName}; entries here add to or replace the shipped ones",
        default=DEFAULT_PROFILES,
    )
    environment: Environment = setting(
        "environment",
        "dev, staging or prod; default = the stack name when it is one of those",
        choices=ENVIRONMENTS,
        default_fn=lambda stack: stack if stack in ENVIRONMENTS else None,
        required=True,
    )
    aws_region: str = setting(
        "aws.region",
        "AWS region of the bucket and database",
        default="us-east-1",
        pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$",
    )
    protect: bool = setting(
        "protect", "protect data-bearing resources (bucket, database, volumes) from deletion", default=True
    )

    @property
    def namespace_prefix(self) -> str:
        return self.kubernetes.namespace_prefix or f"mlops-{self.stack}"

    def namespace(self, service: str) -> str:
        """Namespace of one platform service, e.g. namespace('mlflow') -> 'mlops-dev-mlflow'."""
        return f"{self.namespace_prefix}-{service}"

    def host(self, service: str) -> str:
        return f"{service}.{self.ingress.domain}"

    @property
    def ingress_class(self) -> str:
        return self.ingress.class_name or f"{self.namespace_prefix}-traefik"

    @property
    def ingress_namespace(self) -> str:
        return self.ingress.controller_namespace or self.namespace("ingress")

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    def model_host(self, model: str) -> str:
        """The public host of a model's serving: `models.<model>.serving.host`, default
        `<slug>.models.<ingress.domain>`."""
        return (
            self.catalog.models[model].serving.host
            or f"{names(model)['slug']}.{MODELS_SUBDOMAIN}.{self.ingress.domain}"
        )

    def third_party_image(self, name: str) -> ImageRef:
        """A third-party image (`images.thirdParty`, THIRD_PARTY_IMAGES): pinned by digest in prod."""
        return self.images.third_party_image(name, pinned=self.is_prod)

    @property
    def mlflow_image(self) -> ImageRef:
        """The MLflow server's image (the chart's and the client-user Job's): `mlflow.imageTag` when set (as a
        tag), else the third-party image `mlflow`."""
        if self.mlflow.image_tag:
            return ImageRef(self.third_party_image("mlflow").repository, self.mlflow.image_tag)
        return self.third_party_image("mlflow")

    @property
    def platform_serving_image(self) -> str:
        """The platform's serving image: images.serving when set, else serving.image:serving.imageTag."""
        ref = self.images.serving_image
        return ref.reference if ref is not None else f"{self.serving.image}:{self.serving.image_tag}"

    def serving_image(self, model: str) -> str:
        """The image of a model's serving pods: its serving profile's `images.serving`, else the platform's."""
        image = self.serving_profile(model).images.serving
        if isinstance(image, str):  # load_settings resolved it: a reference (a built image's recorded one)
            return ImageRef.parse(image, self.images.registry).reference
        return self.platform_serving_image

    @property
    def database_egress_cidrs(self) -> tuple[str, ...]:
        """rds mode: where the database's clients may open 5432 (network.databaseCidrs, else
        database.allowedCidrs); external mode: database.cidr."""
        if self.database.mode == "external":
            return (self.database.cidr,) if self.database.cidr else ()
        return self.network.database_cidrs or self.database.allowed_cidrs

    @property
    def uses_aws(self) -> bool:
        """Whether the stack creates anything on AWS (and so needs the AWS provider): the S3 bucket
        (artifacts.mode s3), RDS (database.mode rds) or EFS access points (nfs.mode efsAccessPoint)."""
        return self.artifacts.mode == "s3" or self.database.mode == "rds" or self.nfs.mode == "efsAccessPoint"

    @property
    def database_port(self) -> int:
        """The port the database's clients open: database.port for an external server, else 5432."""
        return self.database.port if self.database.mode == "external" else 5432

    @property
    def database_sslmode(self) -> str:
        """The sslmode of every connection to the database: database.sslmode for an external server, require for
        RDS (it forces TLS), disable in-cluster (traffic stays on the cluster network)."""
        return {"rds": "require", "in-cluster": "disable"}.get(self.database.mode, self.database.sslmode)

    @property
    def fetched_sources(self) -> dict[str, str]:
        """The git URL each model's training run fetches its code from (airflow.gitRepo when its source names only
        a ref), by model; models trained from the platform's own checkout are left out."""
        return {
            model: spec.training.source.repo or self.airflow.git_repo
            for model, spec in sorted(self.catalog.models.items())
            if spec.training.source.fetched
        }

    @property
    def git_ssh_ports(self) -> tuple[int, ...]:
        """The ports the Airflow namespace's pods open SSH connections to: git-sync's and the training sources'."""
        urls = [self.airflow.git_repo, *self.fetched_sources.values()]
        return tuple(sorted({host[1] for url in urls if (host := git_access.ssh_host(url)) is not None}))

    def serving_profile(self, model: str) -> Profile:
        return self.catalog.profiles[self.catalog.models[model].serving.profile]

    @property
    def airflow_image(self) -> ImageRef:
        """The Airflow image (it also trains, unless a training profile names its own): images.airflow when set,
        else airflow.imageRepository:airflow.imageTag."""
        return self.images.airflow_image or ImageRef(self.airflow.image_repository, self.airflow.image_tag)

    @property
    def api_image(self) -> str:
        """The platform API's image (images.api; it has no other setting to fall back on)."""
        ref = self.images.image("api")
        if ref is None:
            raise SettingsError(
                [f"{self.source}: {PROJECT}:images.api is required (the platform API image, services/api/Dockerfile)"]
            )
        return ref.reference
