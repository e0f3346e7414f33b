"""The one reader of the catalog file (the DAG factory's and the platform API's), offline: the catalog JSON (as the
program writes it) read from the file MLOPS_MODEL_CATALOG names, every problem named by the variable, the file or
its key path; each model's entry with its own serving URLs and training profile; a run's params merged over the
model's defaults, a wrong one named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devstack.catalog import DIABETES, IRIS, catalog_document, local_catalog
from services.common import catalog_file, contract
from services.common.catalog_file import CatalogFileError, merge_params

URLS = {IRIS: "http://model-iris-classifier.serving:8000/", DIABETES: "http://model-diabetes-regression.serving:8000"}


def test_each_model_has_its_spec_urls_and_training_profile() -> None:
    document = catalog_document(local_catalog(), URLS, {IRIS: "http://iris-admin:8001"})
    entries = catalog_file.parse(json.loads(json.dumps(document)))  # through JSON, as the file holds it
    assert list(entries) == [DIABETES, IRIS]
    iris = entries[IRIS]
    assert (iris.serving_url, iris.reload_url) == (
        "http://model-iris-classifier.serving:8000",
        "http://iris-admin:8001",
    )
    assert entries[DIABETES].reload_url == entries[DIABETES].serving_url  # no reload URL: the serving URL
    assert (iris.dag_id, iris.rollback_dag_id) == ("train_iris_classifier", "rollback_iris_classifier")
    assert iris.spec == local_catalog().models[IRIS] and iris.aliases == ("champion", "challenger")
    assert iris.training_profile["requests"] == {"cpu": "250m", "memory": "1Gi"}


def test_the_file_comes_from_the_contract_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(contract.MODEL_CATALOG.name, raising=False)
    with pytest.raises(CatalogFileError, match=f"environment variable {contract.MODEL_CATALOG.name} is not set"):
        catalog_file.load()
    path = tmp_path / "catalog.json"
    monkeypatch.setenv(contract.MODEL_CATALOG.name, str(path))
    with pytest.raises(CatalogFileError, match=f"{contract.MODEL_CATALOG.name}={path} cannot be read"):
        catalog_file.load()
    path.write_text(json.dumps(catalog_document(local_catalog(), URLS)))
    assert set(catalog_file.load()) == {IRIS, DIABETES}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(version=2), "version: must be 1; got 2"),
        (lambda d: d.update(models=[]), "models and profiles: both must be JSON objects keyed by name"),
        (lambda d: d["models"][IRIS]["gate"].pop("metric"), f"models.{IRIS}.gate.metric: Field required"),
        (
            lambda d: d["models"][IRIS]["training"].update(profile="huge"),
            f"models.{IRIS}.training.profile: unknown profile 'huge'",
        ),
        (lambda d: d["models"][DIABETES].update(serving_url="model:8000"), f"models.{DIABETES}.serving_url: must be"),
        (lambda d: d["models"][DIABETES].update(reload_url=5), f"models.{DIABETES}.reload_url: must be an http(s) URL"),
        (
            lambda d: d["models"][IRIS]["training"]["params"].update(dataset="x"),
            f"models.{IRIS}.training.params.dataset: is a param of the platform's training DAG: rename it",
        ),
        (lambda d: d.update(models={}), "models: must name at least one model"),
    ],
)
def test_every_problem_is_named_by_its_key_path(change: object, problem: str) -> None:
    document = catalog_document(local_catalog(), URLS)
    change(document)  # type: ignore[operator]
    with pytest.raises(CatalogFileError) as info:
        catalog_file.parse(document)
    assert problem in str(info.value)


def test_a_runs_params_override_the_defaults_of_their_types() -> None:
    defaults = {"C": 1.0, "max_iter": 200, "solver": "lbfgs", "seed": None}
    assert merge_params(defaults, None) == defaults
    assert merge_params(defaults, {"C": 2, "seed": 3}) == {**defaults, "C": 2.0, "seed": 3}
    for params, problem in (
        ({"nope": 1}, "param 'nope' is not one of the model's params (known: C, max_iter, seed, solver)"),
        ({"max_iter": 1.5}, "param 'max_iter' must be int like its default 200; got float 1.5"),
        ({"solver": True}, "param 'solver' must be str"),
        ({"C": [1]}, "param 'C' must be a string, number or boolean; got list"),
    ):
        with pytest.raises(ValueError, match=re.escape(problem)):
            merge_params(defaults, params)
