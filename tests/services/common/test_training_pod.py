"""The training pod's read-only git credentials: a model whose code is fetched gets one projected volume (mode 0440,
mounted read-only) with the pinned known_hosts and exactly its source's Secret (its named credentials; else the
deploy key, optional, for an SSH URL or the platform's repository; nothing for a public https URL); a model trained
from the platform's own checkout gets none; the override never carries a security context (the chart's template
keeps runAsNonRoot and the fsGroup that may read the files); every such pod is strictly valid Kubernetes."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from services.common import git_access
from services.common.catalog import parse_catalog
from services.common.training_pod import TASK_CONTAINER, training_pod

GATE = {"metric": "test_accuracy"}
SOURCES: dict[str, dict[str, Any]] = {
    "platform": {"subdir": "examples/iris"},
    "platform-ref": {"ref": "v1.2.0", "subdir": "examples/iris"},
    "team-ssh": {"repo": "git@github.com:acme/churn.git", "credentials": "churn"},
    "team-https": {"repo": "https://gitlab.com/acme/fraud.git", "credentials": "fraud"},
    "deploy-key": {"repo": "ssh://git@github.com/acme/mlops-models.git", "ref": "main"},
    "public": {"repo": "https://github.com/acme/public-model.git"},
}


def pods() -> dict[str, dict[str, Any]]:
    """The pod override of each model of SOURCES, built from the catalog JSON as Airflow receives it."""
    models = {
        name: {"training": {"entrypoint": "m.train:train", "source": src}, "gate": GATE}
        for name, src in SOURCES.items()
    }
    document = parse_catalog(models).for_airflow()
    return {
        name: training_pod(name, entry, document["profiles"][entry["training"]["profile"]])
        for name, entry in document["models"].items()
    }


def projected(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The sources of the credentials volume by kind (configMap, secret), checked to be mounted read-only."""
    volumes = pod["spec"].get("volumes", [])
    (container,) = pod["spec"]["containers"]
    if not volumes:
        assert "volumeMounts" not in container
        return None
    (volume,) = volumes
    assert volume["name"] == git_access.VOLUME
    assert volume["projected"]["defaultMode"] == 0o440  # root's and the fsGroup's, read only; nobody writes
    assert container["volumeMounts"] == [{"name": git_access.VOLUME, "mountPath": git_access.MOUNT, "readOnly": True}]
    by_kind = {}
    for source in volume["projected"]["sources"]:
        ((kind, spec),) = source.items()
        by_kind[kind] = spec
    return by_kind


def test_each_fetched_source_mounts_the_known_hosts_and_its_own_secret_only() -> None:
    found = {name: projected(pod) for name, pod in pods().items()}
    known_hosts = {
        "name": git_access.KNOWN_HOSTS_CONFIGMAP,
        "items": [{"key": "known_hosts", "path": git_access.KNOWN_HOSTS_FILE}],
    }
    deploy_key = {
        "name": git_access.DEPLOY_KEY_SECRET,
        "items": [{"key": git_access.DEPLOY_KEY_KEY, "path": git_access.SSH_KEY_FILE}],
        "optional": True,  # airflow.gitSshKey may be unset: the fetch then runs without a key
    }
    assert found == {
        "platform": None,  # the platform's own checkout: nothing fetched, nothing mounted
        "platform-ref": {"configMap": known_hosts, "secret": deploy_key},
        "team-ssh": {"configMap": known_hosts, "secret": {"name": "git-credentials-churn"}},
        "team-https": {"configMap": known_hosts, "secret": {"name": "git-credentials-fraud"}},
        "deploy-key": {"configMap": known_hosts, "secret": deploy_key},
        "public": {"configMap": known_hosts},
    }


@pytest.mark.parametrize("k8s", ["1.30.0", "1.37.0"])
def test_the_pods_are_valid_and_leave_the_security_context_to_the_template(k8s: str) -> None:
    for name, pod in pods().items():
        kubernetes_validate.validate(pod, k8s, strict=True)
        assert "securityContext" not in pod["spec"], name  # Airflow would replace the template's as a whole
        (container,) = pod["spec"]["containers"]
        assert container["name"] == TASK_CONTAINER and "securityContext" not in container, name
