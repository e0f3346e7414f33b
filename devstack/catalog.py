"""The model catalog of local runs (`make demo`, the tests): the same JSON the Pulumi program writes into the
`mlops-model-catalog` ConfigMap, with the loopback URLs of the serving processes started here.

- `local_catalog()`: the models and profiles of local runs (the two examples of `examples/`);
- `write_catalog(catalog, path, serving_urls, reload_urls)`: `Catalog.for_airflow(serving_url=..., reload_url=...)`
  as JSON at `path`, the file that MLOPS_MODEL_CATALOG (`catalog_env(path)`) names for the DAGs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common import contract
from services.common.catalog import Catalog, parse_catalog

IRIS = "iris-classifier"
DIABETES = "diabetes-regression"

# The examples as catalog entries (keys as in a stack file's `models`); docs/models.md describes them.
EXAMPLE_MODELS: dict[str, dict[str, Any]] = {
    IRIS: {
        "training": {
            "source": {"subdir": "examples/iris"},
            "entrypoint": "iris_model.train:train",
            "params": {"C": 1.0, "max_iter": 200},
            "timeoutMinutes": 30,
        },
        "gate": {"metric": "test_accuracy", "direction": "max", "threshold": 0.9, "minImprovement": 0.0},
    },
    DIABETES: {
        "training": {
            "source": {"subdir": "examples/diabetes"},
            "entrypoint": "diabetes_model.train:train",
            "params": {"alpha": 0.1},
            "timeoutMinutes": 30,
        },
        "gate": {"metric": "test_rmse", "direction": "min", "threshold": 70.0, "minImprovement": 0.0},
    },
}


def local_catalog() -> Catalog:
    """The catalog of `make demo`: the two examples on the default profiles.

    To take the dev stack's own catalog instead (its `models` and `profiles`), this is the one line to change:
    `return stacks.settings.load_settings("dev").catalog`."""
    return parse_catalog(EXAMPLE_MODELS)


def catalog_document(
    catalog: Catalog, serving_urls: Mapping[str, str], reload_urls: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The JSON document the DAGs read: as the Pulumi program writes it, with these serving URLs per model."""
    return catalog.for_airflow(serving_url=serving_urls, reload_url=reload_urls or serving_urls)


def write_catalog(
    catalog: Catalog, path: Path, serving_urls: Mapping[str, str], reload_urls: Mapping[str, str] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalog_document(catalog, serving_urls, reload_urls), indent=2, sort_keys=True) + "\n")
    return path


def catalog_env(path: Path) -> dict[str, str]:
    """The environment entry that points the DAG file at the catalog JSON."""
    return {contract.MODEL_CATALOG.name: str(path)}
