"""The model catalog file, the one reader of it: the JSON the Pulumi program writes (`Catalog.for_airflow`, see
services.common.catalog) into the ConfigMap mounted in every Airflow component and in the platform API, at the
path that the contract's MLOPS_MODEL_CATALOG names. `make demo` and the tests write the same JSON for local runs.
The DAG factory (dags/) and the platform API (services/api/catalog.py) both read it here, as `CatalogModel`s.

    {"version": 1,
     "models": {"<model>": {"training": {...}, "gate": {...}, "serving": {...}, "names": {...},
                            "serving_url": "<in-cluster predict base URL>", "reload_url": "<admin base URL>"}},
     "profiles": {"<profile>": {...}}}

`load()` validates it with the catalog's own models (the same checks as the stack file) and raises
CatalogFileError naming the variable, the file and every problem by its key path, so that Airflow shows an import
error instead of DAGs that would fail later (and the API does not start). `merge_params` is how a run's params
override the model's defaults, for the training runner and for the API's checks of a request alike. Only pydantic
and the standard library are imported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common import contract
from services.common.catalog import CatalogError, ModelSpec, ParamValue, names, parse_catalog
from services.common.contract import MODEL_CATALOG

FORMAT_VERSION = 1
# The keys of each model's entry that carry its serving endpoints
# (`Catalog.for_airflow(serving_url=..., reload_url=...)`; no reload_url: the serving URL).
SERVING_URL_KEY = contract.CATALOG_SERVING_URL_KEY
RELOAD_URL_KEY = contract.CATALOG_RELOAD_URL_KEY
# Params of every training DAG besides the model's own: a model param may not take these names.
RESERVED_PARAMS = ("alias", "dataset", "verify_timeout_seconds")


class CatalogFileError(RuntimeError):
    """The catalog file is missing, unreadable or invalid; the message says which and where."""


@dataclass(frozen=True)
class CatalogModel:
    """One model of the catalog, with what its DAGs and the platform API need."""

    name: str
    spec: ModelSpec
    serving_url: str
    reload_url: str
    # The entry and its training profile as the JSON holds them (services.common.training_pod reads these).
    document: Mapping[str, Any] = field(repr=False)
    training_profile: Mapping[str, Any] = field(repr=False)

    @property
    def names(self) -> dict[str, str]:
        return names(self.name)

    @property
    def dag_id(self) -> str:
        return self.names["dag_id"]

    @property
    def rollback_dag_id(self) -> str:
        return self.names["rollback_dag_id"]

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(self.spec.serving.aliases)

    @property
    def promote_alias(self) -> str:
        """The champion's alias, the first the model's serving loads: every candidate is gated against its holder,
        and a rollback moves it back."""
        return self.aliases[0]

    @property
    def training_alias(self) -> str:
        """The alias a training registers a passing candidate under by default (`training.alias`, else the
        champion's): `challenger` makes trainings produce challengers for a rollout."""
        return self.spec.training.alias or self.promote_alias


def load(path: str | Path | None = None) -> dict[str, CatalogModel]:
    """The models of the catalog file at `path` (default: the file MLOPS_MODEL_CATALOG names), by name."""
    where = f"{MODEL_CATALOG.name}={path}" if path is not None else None
    if path is None:
        value = MODEL_CATALOG.get()
        if value is None:
            raise CatalogFileError(
                f"environment variable {MODEL_CATALOG.name} is not set: it must name the model catalog JSON "
                f"({MODEL_CATALOG.description})"
            )
        path, where = value, f"{MODEL_CATALOG.name}={value}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError(f"the model catalog {where} cannot be read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogFileError(f"the model catalog {where} is not valid JSON: {exc}") from None
    try:
        return parse(document)
    except CatalogFileError as exc:
        raise CatalogFileError(f"the model catalog {where} is invalid: {exc}") from None


def parse(document: Any) -> dict[str, CatalogModel]:
    """The models of a catalog document (as `Catalog.for_airflow` writes it); CatalogFileError naming every
    problem by its key path."""
    if not isinstance(document, Mapping):
        raise CatalogFileError(f"must be a JSON object; got {type(document).__name__}")
    if document.get("version") != FORMAT_VERSION:
        raise CatalogFileError(f"version: must be {FORMAT_VERSION}; got {document.get('version')!r}")
    models = document.get("models")
    profiles = document.get("profiles")
    if not isinstance(models, Mapping) or not isinstance(profiles, Mapping):
        raise CatalogFileError("models and profiles: both must be JSON objects keyed by name")
    specs = {
        name: {k: v for k, v in entry.items() if k in ModelSpec.model_fields} if isinstance(entry, Mapping) else entry
        for name, entry in models.items()
    }
    problems: list[tuple[str, str]] = []
    try:
        catalog = parse_catalog(specs, profiles)
    except CatalogError as exc:
        problems.extend(exc.problems)
        catalog = None
    for name, entry in models.items():
        if isinstance(entry, Mapping):
            problems.extend(_entry_problems(name, entry))
    if problems or catalog is None:
        raise CatalogFileError("; ".join(f"{path}: {msg}" for path, msg in problems))
    out = {}
    for name, spec in sorted(catalog.models.items()):
        entry = models[name]
        serving_url = str(entry[SERVING_URL_KEY]).rstrip("/")
        out[name] = CatalogModel(
            name=name,
            spec=spec,
            serving_url=serving_url,
            reload_url=str(entry.get(RELOAD_URL_KEY) or serving_url).rstrip("/"),
            document={**entry, "names": names(name)},
            training_profile=profiles[spec.training.profile],
        )
    return out


def _entry_problems(name: str, entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the platform adds to a model's entry: its serving and reload URLs, and no reserved training param."""
    problems: list[tuple[str, str]] = []
    url = entry.get(SERVING_URL_KEY)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append((f"models.{name}.{SERVING_URL_KEY}", f"must be the model's serving URL; got {url!r}"))
    reload_url = entry.get(RELOAD_URL_KEY)
    if reload_url is not None and (not isinstance(reload_url, str) or not reload_url.startswith("http")):
        problems.append((f"models.{name}.{RELOAD_URL_KEY}", f"must be an http(s) URL; got {reload_url!r}"))
    params = entry.get("training", {}).get("params") if isinstance(entry.get("training"), Mapping) else None
    for param in RESERVED_PARAMS:
        if isinstance(params, Mapping) and param in params:
            problems.append(
                (f"models.{name}.training.params.{param}", "is a param of the platform's training DAG: rename it")
            )
    return problems


def merge_params(defaults: Mapping[str, ParamValue], overrides: Mapping[str, Any] | None) -> dict[str, ParamValue]:
    """The catalog's defaults overridden by a run's params.

    ValueError naming the param when a run's param is unknown, is not a scalar, or has another type than the
    default (an int where the default is a float is taken as that float; a default of null takes any scalar)."""
    merged: dict[str, ParamValue] = dict(defaults)
    problems = []
    for name, value in (overrides or {}).items():
        if name not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            problems.append(f"param {name!r} is not one of the model's params (known: {known})")
            continue
        default = defaults[name]
        if value is not None and not isinstance(value, str | int | float | bool):
            problems.append(f"param {name!r} must be a string, number or boolean; got {type(value).__name__}")
        elif default is None:
            merged[name] = value
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            merged[name] = float(value)
        elif type(value) is not type(default):
            problems.append(
                f"param {name!r} must be {type(default).__name__} like its default {default!r}; "
                f"got {type(value).__name__} {value!r}"
            )
        else:
            merged[name] = value
    if problems:
        raise ValueError("; ".join(problems))
    return merged
