"""MLflow model-registry operations used by the DAGs (aliases only, never stages)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.registry_tags import previous_tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

READY = "READY"
FAILED_REGISTRATION = "FAILED_REGISTRATION"
PENDING_REGISTRATION = "PENDING_REGISTRATION"


class RegistryError(Exception):
    """A registry state that makes the requested operation wrong (not a transient failure)."""


def client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _is_missing(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def alias_holder(c: MlflowClient, model: str, alias: str) -> str | None:
    """Version currently under `alias`, or None if the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(c.get_model_version_by_alias(model, alias).version)
    except MlflowException as exc:
        # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias, INVALID_PARAMETER_VALUE "... not found".
        if _is_missing(exc) or (exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message):
            return None
        raise


def version_status(c: MlflowClient, model: str, version: str) -> str | None:
    """Status of a version, or None if it does not exist."""
    try:
        return str(c.get_model_version(model, version).status)
    except Exception as exc:
        if _is_missing(exc):
            return None
        raise


def register(model: str, model_uri: str, tags: dict[str, str], await_seconds: int = 0) -> str:
    """Create a new version of `model` from a logged model (``models:/m-...``). By default does not wait
    for READY (the DAG's sensor does); `await_seconds` waits that long at most. Uses the tracking URI set
    with `mlflow.set_tracking_uri`."""
    import mlflow

    version = mlflow.register_model(model_uri, model, await_registration_for=await_seconds, tags=tags)
    log.info("registered %s version %s (status %s)", model, version.version, version.status)
    return str(version.version)


@dataclass(frozen=True)
class AliasMove:
    """Record of one alias move, pushed to XCom so a rollback can undo it."""

    model: str
    alias: str
    previous_version: str | None
    new_version: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "model": self.model,
            "alias": self.alias,
            "previous_version": self.previous_version,
            "new_version": self.new_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, str | None]) -> AliasMove:
        new_version = data["new_version"]
        model = data["model"]
        alias = data["alias"]
        if new_version is None or model is None or alias is None:
            raise ValueError(f"incomplete alias-move record: {data}")
        return cls(model=model, alias=alias, previous_version=data["previous_version"], new_version=new_version)


def set_alias(c: MlflowClient, model: str, alias: str, version: str | None) -> None:
    """Point `alias` at `version`; None deletes the alias."""
    if version is None:
        c.delete_registered_model_alias(model, alias)
        log.info("deleted alias %s@%s", model, alias)
    else:
        c.set_registered_model_alias(model, alias, version)
        log.info("alias %s@%s -> version %s", model, alias, version)


def record_previous(c: MlflowClient, move: AliasMove) -> None:
    """Tag the new version with the version it replaced under the alias ("" when there was none)."""
    c.set_model_version_tag(move.model, move.new_version, previous_tag(move.alias), move.previous_version or "")


def restore(c: MlflowClient, move: AliasMove) -> str:
    """Undo `move` if the alias still points at its new version. Returns what was done."""
    current = alias_holder(c, move.model, move.alias)
    if current == move.new_version:
        set_alias(c, move.model, move.alias, move.previous_version)
        return f"alias {move.alias} moved back from version {move.new_version} to {move.previous_version or '(none)'}"
    if current == move.previous_version:
        return f"alias {move.alias} already points at version {move.previous_version or '(none)'}"
    # Someone else moved the alias since: overwriting their choice would be a second incident.
    raise RegistryError(
        f"alias {move.alias} now points at version {current}, neither the promoted version {move.new_version} "
        f"nor the previous one {move.previous_version}: not touching it"
    )


def resolve_rollback_target(c: MlflowClient, model: str, alias: str, target: str) -> tuple[str, str | None]:
    """Resolve the manual rollback's target ("previous" or a version number).

    Returns (target_version, current_version). Raises RegistryError when the rollback must be refused:
    target missing, not READY, or already holding the alias.
    """
    current = alias_holder(c, model, alias)
    target = target.strip()
    if target.lower() == "previous":
        if current is None:
            raise RegistryError(f"alias {alias} of model {model} does not exist: there is no previous version")
        recorded = c.get_model_version(model, current).tags.get(previous_tag(alias))
        if recorded:
            resolved = recorded
        else:
            # Promoted outside the DAGs (no record): the newest READY version older than the current one.
            older = [
                int(v.version)
                for v in c.search_model_versions(f"name = '{model}'")
                if int(v.version) < int(current) and v.status == READY
            ]
            if not older:
                raise RegistryError(f"no version of {model} older than version {current} to roll back to")
            resolved = str(max(older))
        log.info("'previous' of %s@%s (version %s) is version %s", model, alias, current, resolved)
    else:
        if not target.isdigit() or int(target) < 1:
            raise RegistryError(f"target version must be 'previous' or a positive integer, got {target!r}")
        resolved = str(int(target))
    status = version_status(c, model, resolved)
    if status is None:
        raise RegistryError(f"version {resolved} of model {model} does not exist")
    if status != READY:
        raise RegistryError(f"version {resolved} of model {model} is {status}, not {READY}")
    if resolved == current:
        raise RegistryError(f"version {resolved} already holds alias {alias} of model {model}")
    return resolved, current


def example_rows(tracking_uri: str, model: str, version: str, n: int = 3) -> list[dict[str, Any]]:
    """Up to `n` rows of the version's own input example (every version the runner let through has one), as
    JSON-ready request rows: what verification sends to serving, whatever the model."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    root = str(client(tracking_uri).get_model_version_download_uri(model, version)).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="mlops-example-") as tmp:
        local = Path(download_artifacts(artifact_uri=f"{root}/MLmodel", dst_path=tmp, tracking_uri=tracking_uri))
        meta = Model.load(str(local))
        info = meta.saved_input_example_info or {}
        if not info.get("artifact_path"):
            raise RegistryError(f"version {version} of {model} has no input example to verify serving with")
        download_artifacts(artifact_uri=f"{root}/{info['artifact_path']}", dst_path=tmp, tracking_uri=tracking_uri)
        example: Any = meta.load_input_example(str(local.parent))  # a DataFrame for a table of named columns
    if not hasattr(example, "to_dict"):
        raise RegistryError(f"the input example of {model} version {version} is not a table of named columns")
    rows: list[dict[str, Any]] = example.head(n).to_dict(orient="records")
    return [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows]
