"""Kubernetes names and labels of the platform, from one place (no ComponentResource here).

The labels the components put on their objects come from `labels()`: `app.kubernetes.io/part-of:
mlops-platform`, and the application name, component, stack and the platform's own
`mlops-platform/<key>` labels. Names unique to a stack, the platform's annotation keys and the
in-cluster DNS names of Services are defined here too.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from services.common import contract
from services.common.catalog import names

PLATFORM = "mlops-platform"
PART_OF = "app.kubernetes.io/part-of"
APP_NAME = "app.kubernetes.io/name"
APP_COMPONENT = "app.kubernetes.io/component"
# the platform's own labels and annotations: `mlops-platform/<key>`
STACK_LABEL = f"{PLATFORM}/stack"
# On the pod templates of the artifact store's consumers (MLflow, Airflow): its value changes with the
# consumer's active S3 key, so the pods roll onto a new key (ArtifactStore.rotation_annotations).
ROTATION_ANNOTATION = f"{PLATFORM}/s3-key"
# On the pod templates of the database's clients: its value changes with the login role and password their
# connection Secret holds, so the pods roll onto the next one (Database.credential_annotations).
DB_CREDENTIALS_ANNOTATION = f"{PLATFORM}/db-credentials-version"
CLUSTER_DOMAIN = "svc.cluster.local"


def platform_key(key: str) -> str:
    """The platform's own label or annotation key, e.g. platform_key("volume") -> "mlops-platform/volume"."""
    return f"{PLATFORM}/{key}"


def labels(
    *,
    name: str | None = None,
    component: str | None = None,
    stack: str | None = None,
    base: Mapping[str, str] | None = None,
    **platform: str,
) -> dict[str, str]:
    """The standard labels: `base` (the caller's own) first, then part-of, and the application name,
    component and stack when given; each keyword in `platform` becomes `mlops-platform/<keyword>`.
    The standard labels win over `base`."""
    result = dict(base or {})
    result[PART_OF] = PLATFORM
    if name is not None:
        result[APP_NAME] = name
    if component is not None:
        result[APP_COMPONENT] = component
    if stack is not None:
        result[STACK_LABEL] = stack
    result.update({platform_key(key): value for key, value in platform.items()})
    return result


def stack_name(stack: str, *parts: str) -> str:
    """A name unique to one stack (PersistentVolumes, IAM users, RDS identifiers, bucket prefixes):
    stack_name("dev", "serving-logs") -> "mlops-dev-serving-logs"; a trailing "" leaves a trailing dash."""
    return "-".join(("mlops", stack, *parts))


def cluster_host(service: pulumi.Input[str], namespace: pulumi.Input[str]) -> pulumi.Output[str]:
    """The in-cluster DNS name of a Service: `<service>.<namespace>.svc.cluster.local`."""
    return pulumi.Output.concat(service, ".", namespace, f".{CLUSTER_DOMAIN}")


def cluster_url(service: pulumi.Input[str], namespace: pulumi.Input[str], port: int) -> pulumi.Output[str]:
    """The in-cluster HTTP URL of a Service port: `http://<service>.<namespace>.svc.cluster.local:<port>`."""
    return pulumi.Output.concat("http://", cluster_host(service, namespace), f":{port}")


def serving_url(model: str, namespace: str) -> str:
    """The in-cluster URL of a model's serving Service (`model-<slug>` in the serving namespace, on the serving
    port): what its ServingService exports as `url` and what the model catalog gives Airflow and the API."""
    return f"http://{names(model)['k8s']}.{namespace}.{CLUSTER_DOMAIN}:{contract.SERVING_PORT}"
