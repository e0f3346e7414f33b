"""What the DAG factory builds from the catalog, offline: the model params as DAG params of their types; the
training pod override of every profile valid for Kubernetes; a model's code fetched from another repository and
ref."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
from mlops_tasks import pipelines, sources

from devstack.catalog import DIABETES, IRIS, local_catalog
from services.common import training_pod
from services.common.catalog import GPU_RESOURCE, Source
from tests.dags.conftest import catalog_entries

URLS = {IRIS: "http://model-iris-classifier.serving:8000/", DIABETES: "http://model-diabetes-regression.serving:8000"}


def test_model_params_become_dag_params_of_their_types() -> None:
    schemas = {name: pipelines.param_of(name, value).schema for name, value in {"a": 1.5, "b": 3, "c": "x"}.items()}
    assert [schemas[n]["type"] for n in "abc"] == ["number", "integer", "string"]
    assert pipelines.param_of("d", True).schema["type"] == "boolean"
    assert pipelines.param_of("e", None).schema["type"] == ["null", "string", "number", "boolean"]
    params = pipelines.training_params(catalog_entries(URLS)[DIABETES])
    assert set(params) == {"alpha", "alias", "dataset", "verify_timeout_seconds"}
    assert params["alias"].schema["enum"] == ["champion", "challenger"]


@pytest.mark.parametrize("k8s", ["1.30.0", "1.37.0"])
def test_the_training_pod_of_every_profile_is_a_valid_pod(k8s: str) -> None:
    catalog = local_catalog()
    models = {
        name: spec.model_copy(update={"training": spec.training.model_copy(update={"profile": profile})})
        for (name, spec), profile in zip(sorted(catalog.models.items()), ("gpu", "medium"), strict=True)
    }
    for name, entry in catalog_entries(URLS, catalog.model_copy(update={"models": models})).items():
        pod = training_pod.training_pod(name, dict(entry.document), dict(entry.training_profile))
        kubernetes_validate.validate(pod, k8s, strict=True)
        [container] = pod["spec"]["containers"]
        assert container["name"] == training_pod.TASK_CONTAINER  # the container the executor merges it into
        assert pod["metadata"]["labels"]["mlops-platform/model"] == entry.names["slug"]
        if entry.spec.training.profile == "gpu":
            assert container["resources"]["limits"][GPU_RESOURCE] == "1"
            assert pod["spec"]["nodeSelector"] and pod["spec"]["tolerations"]
        else:
            assert GPU_RESOURCE not in container["resources"]["limits"] and "nodeSelector" not in pod["spec"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with a tagged commit and a later one on its branch."""
    path = tmp_path / "models-repo"

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)

    path.mkdir()
    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (path / "model.txt").write_text("v1\n")
    git("add", "model.txt")
    git("commit", "-q", "-m", "v1")
    git("tag", "v1")
    (path / "model.txt").write_text("v2\n")
    git("commit", "-q", "-am", "v2")
    return path


def test_the_code_is_fetched_at_the_ref_of_another_repository(repo: Path, tmp_path: Path) -> None:
    platform = tmp_path / "platform"
    platform.mkdir()
    with sources.checkout(Source(), platform) as folder:  # the platform's own checkout
        assert folder == platform
    for ref, content in (("v1", "v1\n"), ("main", "v2\n"), (None, "v2\n")):
        dest = tmp_path / f"fetched-{ref}"
        dest.mkdir()
        sources.fetch(str(repo), ref, dest)
        assert (dest / "model.txt").read_text() == content
    with pytest.raises(sources.SourceError, match=r"the training code \(nope of .*\) could not be fetched"):
        sources.fetch(str(repo), "nope", tmp_path / "none")
    with pytest.raises(sources.SourceError, match=r"has no origin remote to fetch it from: set training\.source\.repo"):
        with sources.checkout(Source(ref="v1"), repo):
            pass
    assert sources.redact("https://user:token@git.example.com/x.git") == "https://***@git.example.com/x.git"
