"""Registered versions of the example models, for the tests, the benchmark and the demo.

`train_and_register(tracking_uri, "iris", alias="champion")` trains exactly as the `train_<model>` DAG does: the
platform's runner (`mlops_tasks.runner.train`) runs the example's entrypoint as a subprocess under the training
contract and checks what it logged (one model with a signature, an input example and pinned requirements, and
the gate metric); the version is then registered with the DAGs' registry code (`mlops_tasks.registry`), awaited
until READY, and an alias optionally pointed at it. The iris example by default (`spec=` names another entry of
`devstack.catalog.local_catalog()`), whatever the registered name. `register_again` adds another version of an
already logged model without training again. `iris_rows()` gives valid request rows for the iris signature.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devstack import REPO
from devstack.catalog import IRIS, local_catalog
from services.common.catalog import ModelSpec
from services.common.models import pip_requirements

__all__ = ["RegisteredVersion", "iris_rows", "pip_requirements", "register_again", "set_alias", "train_and_register"]

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
    spec: ModelSpec | None = None,
    params: Mapping[str, Any] | None = None,
    C: float | None = None,
    max_iter: int | None = None,
) -> RegisteredVersion:
    """Train through the runner as the DAG does (the iris example unless `spec` says otherwise; `params`, `C` and
    `max_iter` override its params), register a new READY version of `model_name`; move `alias` to it when given."""
    from mlops_tasks import runner

    overrides = dict(params or {})
    if C is not None:
        overrides["C"] = float(C)
    if max_iter is not None:
        overrides["max_iter"] = int(max_iter)
    outcome = runner.train(
        model_name,
        spec or local_catalog().models[IRIS],
        overrides,
        tracking_uri,
        dag_run_id=f"devstack-{uuid.uuid4().hex[:12]}",
        workdir=REPO,
    )
    return _register(tracking_uri, model_name, outcome.run_id, outcome.model_uri, alias)


def register_again(
    tracking_uri: str, registered: RegisteredVersion, *, model_name: str | None = None, alias: str | None = None
) -> RegisteredVersion:
    """Another version of the same logged model (no training), of `model_name` (default: the same registered
    model): for tests that need several versions."""
    return _register(tracking_uri, model_name or registered.name, registered.run_id, registered.model_uri, alias)


def _register(tracking_uri: str, model_name: str, run_id: str, model_uri: str, alias: str | None) -> RegisteredVersion:
    import mlflow
    from mlops_tasks import registry

    mlflow.set_tracking_uri(tracking_uri)  # registry.register uses the process's tracking URI
    version = registry.register(model_name, model_uri, tags={}, await_seconds=REGISTRATION_TIMEOUT_S)
    client = registry.client(tracking_uri)
    if alias:
        registry.set_alias(client, model_name, alias, version)
    return RegisteredVersion(
        name=model_name,
        version=version,
        run_id=run_id,
        model_uri=model_uri,
        source=str(client.get_model_version(model_name, version).source),
    )


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> None:
    from mlops_tasks import registry

    registry.set_alias(registry.client(tracking_uri), model_name, alias, version)
