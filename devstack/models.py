"""Train and register a small real model (iris, StandardScaler + LogisticRegression) in MLflow.

`train_and_register(tracking_uri, "iris", alias="champion")` fits the model on scikit-learn's bundled
iris data (no network), logs it with a signature, an input example and explicit `pip_requirements`
(which skips MLflow's ~10 s requirement-inference subprocess: ~1 s per model), registers a new version
and optionally points an alias at it. `iris_rows()` gives valid request rows for that signature.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from services.common.models import pip_requirements

IRIS_COLUMNS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str  # runs:/ or models:/ URI of the logged model
    source: str  # the version's source as the registry stores it


def iris_rows(n: int = 3, offset: int = 0) -> list[dict[str, float]]:
    """`n` rows of iris features keyed by the signature's column names (cycled past 150)."""
    from sklearn.datasets import load_iris

    data = load_iris()
    rows = []
    for i in range(offset, offset + n):
        values = data.data[i % len(data.data)]
        rows.append({col: float(v) for col, v in zip(IRIS_COLUMNS, values, strict=True)})
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
    """Fit, log and register a new version of `model_name`; move `alias` to it when given."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    features, target = load_iris(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, target)
    with mlflow.start_run(tags=tags or {}) as run:
        mlflow.log_params({"C": C, "max_iter": max_iter})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features, model.predict(features)),
            input_example=features.head(3),
            pip_requirements=pip_requirements(),
            registered_model_name=model_name,
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    version = str(info.registered_model_version)
    mv = client.get_model_version(model_name, version)
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    return RegisteredVersion(
        name=model_name, version=version, run_id=run.info.run_id, model_uri=info.model_uri, source=str(mv.source)
    )


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(model_name, alias, version)


def alias_version(tracking_uri: str, model_name: str, alias: str) -> str:
    from mlflow import MlflowClient

    mv: Any = MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(model_name, alias)
    return str(mv.version)
