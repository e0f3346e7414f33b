"""The Kubernetes pod a model's training step runs in: image, resources, GPUs and placement from its profile.

Airflow runs every task of the platform's DAGs as a pod (KubernetesExecutor). The training task of a model adds
this pod as its `pod_override`: Airflow merges it over the pod template of the chart, so the task keeps the
template's volumes, Secrets and logging and gains the profile's image, requests and limits, `nvidia.com/gpu`
count, node selector, tolerations and priority class. Inside that pod the runner (`dags/mlops_tasks/runner.py`)
starts the model's entrypoint as a subprocess, so its output lands in the task's log like any task output.

A profile's training image must be built FROM the platform's Airflow image (it runs the Airflow task too, and
fetches the code with its git and ssh); unset, the Airflow image itself trains.

A model whose source is fetched (`training.source.repo` or `ref`) also gets its read-only git credentials as files
(`services.common.git_access`): one projected volume, mode 0440 and mounted read-only at `git_access.MOUNT`, with
the known_hosts of the ConfigMap `git-known-hosts` and the keys of its source's Secret (its named credentials, or
the deploy key for an SSH URL, optional since airflow.gitSshKey may be unset). Nothing else of the pod changes: the
chart's pod template keeps its security context (runAsNonRoot, the task user, fsGroup: the group that may read the
files), since Airflow replaces a `securityContext` of the override as a whole.

The same function feeds the DAG (at parse time) and the offline tests, which validate the pod strictly against
the Kubernetes schema for both stacks' catalogs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.common import git_access

# KubernetesExecutor's name for the container that runs the task (its pod_override must use it).
TASK_CONTAINER = "base"
PART_OF = "mlops-platform"


def training_pod(model: str, entry: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    """The pod override (a `v1/Pod` object as a dict) of one model's training task.

    `entry` is the model's entry of the catalog as Airflow receives it (`Catalog.for_airflow()["models"][model]`),
    `profile` the entry of its training profile in the same document.
    """
    names = entry["names"]
    container: dict[str, Any] = {"name": TASK_CONTAINER, "resources": _resources(profile)}
    image = (profile.get("images") or {}).get("training")
    if image:
        container["image"] = image
    spec: dict[str, Any] = {"containers": [container]}
    if profile.get("nodeSelector"):
        spec["nodeSelector"] = dict(profile["nodeSelector"])
    if profile.get("tolerations"):
        spec["tolerations"] = [dict(t) for t in profile["tolerations"]]
    if profile.get("priorityClassName"):
        spec["priorityClassName"] = profile["priorityClassName"]
    volume = git_volume(entry["training"]["source"])
    if volume is not None:
        spec["volumes"] = [volume]
        container["volumeMounts"] = [{"name": git_access.VOLUME, "mountPath": git_access.MOUNT, "readOnly": True}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "labels": {
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/component": "training",
                "mlops-platform/model": names["slug"],
            },
            "annotations": {"mlops-platform/registered-model": model},
        },
        "spec": spec,
    }


def git_volume(source: Mapping[str, Any]) -> dict[str, Any] | None:
    """The read-only git credentials volume of a model's training pod (`source`: its `training.source` as the catalog
    JSON holds it); None when nothing is fetched (the platform's own checkout)."""
    if source.get("repo") is None and source.get("ref") is None:
        return None
    files: list[dict[str, Any]] = [
        {
            "configMap": {
                "name": git_access.KNOWN_HOSTS_CONFIGMAP,
                "items": [{"key": git_access.KNOWN_HOSTS_FILE, "path": git_access.KNOWN_HOSTS_FILE}],
            }
        }
    ]
    credentials = source.get("credentials")
    secret = git_access.credentials_secret(source.get("repo"), credentials)
    if secret == git_access.DEPLOY_KEY_SECRET:
        deploy_key = [{"key": git_access.DEPLOY_KEY_KEY, "path": git_access.SSH_KEY_FILE}]
        files.append({"secret": {"name": secret, "items": deploy_key, "optional": True}})
    elif secret is not None:
        files.append({"secret": {"name": secret}})  # its keys are the file names (git_access.*_FILE)
    return {"name": git_access.VOLUME, "projected": {"defaultMode": git_access.FILE_MODE, "sources": files}}


def _resources(profile: dict[str, Any]) -> dict[str, dict[str, str]]:
    requests = {k: str(v) for k, v in profile["requests"].items()}
    limits = {k: str(v) for k, v in profile["limits"].items()}
    if profile.get("gpus"):
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(profile["gpus"])
    return {"requests": requests, "limits": limits}


def as_v1_pod(pod: dict[str, Any]) -> Any:
    """The pod as the Kubernetes client's `V1Pod` (what Airflow's executor_config expects); None when the
    Kubernetes client is not installed (local runs, which use no executor pods)."""
    try:
        from kubernetes.client import ApiClient
    except ImportError:
        return None

    class _Response:  # ApiClient.deserialize reads `.data`
        def __init__(self, data: str) -> None:
            self.data = data

    import json

    return ApiClient().deserialize(_Response(json.dumps(pod)), "V1Pod")
