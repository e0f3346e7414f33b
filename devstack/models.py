"""Registered versions of the DAG's own model, for the tests, the benchmark and the demo.

`train_and_register(tracking_uri, "iris", alias="champion")` trains with the DAG's training code
(`mlops_tasks.training.train_and_log`: iris StandardScaler + LogisticRegression, the fixed split, logged
with a signature, an input example and explicit `pip_requirements`, which skips MLflow's ~10 s
requirement-inference subprocess), registers a new version with the DAG's registry code
(`mlops_tasks.registry`), waits until it is READY and optionally points an alias at it.
`iris_rows()` gives valid request rows for that signature.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.models import pip_requirements

__all__ = ["RegisteredVersion", "iris_rows", "pip_requirements", "set_alias", "train_and_register"]

# Seconds to wait for a new version to be READY (MLflow's own default for `register_model`).
REGISTRATION_TIMEOUT_S = 300


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/ URI of the logged model
    source: str  # the version's source as the registry stores it


def iris_rows(n: int = 3, offset: int = 0) -> list[dict[str, float]]:
    """`n` rows of iris features keyed by the signature's column names (cycled past 150)."""
    from sklearn.datasets import load_iris

    data = load_iris()
    rows = []
    for i in range(offset, offset + n):
        values = data.data[i % len(data.data)]
        rows.append({str(col): float(v) for col, v in zip(data.feature_names, values, strict=True)})
    return rows


def train_and_register(
    tracking_uri: str,
    model_name: str,
    *,
    alias: str | None = None,
    C: float = 1.0,
    max_iter: int = 200,
    experiment: str = "devstack",
    tags: dict[str, str] | None = None,
) -> RegisteredVersion:
    """Train as the DAG trains, register a new READY version of `model_name`; move `alias` to it when given."""
    import mlflow
    from mlops_tasks import registry
    from mlops_tasks.training import Hyperparameters, train_and_log

    logged = train_and_log(
        tracking_uri=tracking_uri, experiment=experiment, hyper=Hyperparameters(C=C, max_iter=max_iter), tags=tags or {}
    )
    mlflow.set_tracking_uri(tracking_uri)  # registry.register uses the process's tracking URI
    version = registry.register(model_name, logged["model_uri"], tags={}, await_seconds=REGISTRATION_TIMEOUT_S)
    client = registry.client(tracking_uri)
    if alias:
        registry.set_alias(client, model_name, alias, version)
    return RegisteredVersion(
        name=model_name,
        version=version,
        run_id=logged["run_id"],
        model_uri=logged["model_uri"],
        source=str(client.get_model_version(model_name, version).source),
    )


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> None:
    from mlops_tasks import registry

    registry.set_alias(registry.client(tracking_uri), model_name, alias, version)
