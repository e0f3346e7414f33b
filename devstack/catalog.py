"""The model catalog of local runs (`make demo`, the tests): the same JSON the Pulumi program writes into the
`mlops-model-catalog` ConfigMap, with the loopback URLs of the serving processes started here.

- `local_catalog()`: the models and profiles of local runs: the dev stack file's (the two examples of `examples/`);
- `write_catalog(catalog, path, serving_urls, reload_urls)`: `Catalog.for_airflow(serving_url=..., reload_url=...)`
  as JSON at `path`, the file that MLOPS_MODEL_CATALOG (`catalog_env(path)`) names for the DAGs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common import contract
from services.common.catalog import Catalog, parse_catalog

IRIS = "iris-classifier"
DIABETES = "diabetes-regression"
LOCAL_STACK = "dev"


def local_catalog() -> Catalog:
    """The catalog of `make demo` and the tests: the dev stack's own `models` and `profiles` (Pulumi.dev.yaml,
    validated by stacks.settings as `pulumi up` validates them): the two examples of `examples/`."""
    return stack_catalog(LOCAL_STACK)


@functools.cache
def stack_catalog(stack: str) -> Catalog:
    """The validated catalog of `Pulumi.<stack>.yaml`."""
    from harness.run import read_stack_file
    from stacks.settings import load_settings

    stack_file = read_stack_file(stack)
    return load_settings(stack, stack_file.config, set(stack_file.secret_keys), stack_file.source).catalog


def extended(catalog: Catalog, models: Mapping[str, Mapping[str, Any]]) -> Catalog:
    """`catalog` with more models (entries as a stack file writes them), validated together with its profiles."""
    raw = {
        name: spec.model_dump(mode="json", by_alias=True, exclude_none=True) for name, spec in catalog.models.items()
    }
    profiles = {
        name: profile.model_dump(mode="json", by_alias=True, exclude_none=True)
        for name, profile in catalog.profiles.items()
    }
    return parse_catalog({**raw, **models}, profiles)


def catalog_document(
    catalog: Catalog, serving_urls: Mapping[str, str], reload_urls: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The JSON document the DAGs read: as the Pulumi program writes it, with these serving URLs per model."""
    return catalog.for_airflow(
        **{contract.CATALOG_SERVING_URL_KEY: serving_urls, contract.CATALOG_RELOAD_URL_KEY: reload_urls or serving_urls}
    )


def write_catalog(
    catalog: Catalog, path: Path, serving_urls: Mapping[str, str], reload_urls: Mapping[str, str] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalog_document(catalog, serving_urls, reload_urls), indent=2, sort_keys=True) + "\n")
    return path


def catalog_env(path: Path) -> dict[str, str]:
    """The environment entry that points the DAG file at the catalog JSON."""
    return {contract.MODEL_CATALOG.name: str(path)}
