"""Registry operations of the DAGs against a real MLflow server (PostgreSQL + S3 artifacts): alias holders,
restores that never clobber someone else's move, rollback targets and their refusals, a version's own example rows."""

from __future__ import annotations

import uuid

import pytest
from mlops_tasks import registry

from devstack.models import RegisteredVersion, register_again
from services.common.registry_tags import previous_tag

pytestmark = [pytest.mark.servers]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _version(uri: str, trained: RegisteredVersion, model: str, alias: str | None = None) -> str:
    return register_again(uri, trained, model_name=model, alias=alias).version


def test_alias_holder_is_none_for_missing_model_and_missing_alias(
    mlflow_tracking_uri: str, trained_iris: RegisteredVersion
) -> None:
    c = registry.client(mlflow_tracking_uri)
    model = _name("reg-missing")
    assert registry.alias_holder(c, model, "champion") is None
    _version(mlflow_tracking_uri, trained_iris, model)
    assert registry.alias_holder(c, model, "champion") is None
    assert registry.version_status(c, model, "1") == registry.READY
    assert registry.version_status(c, model, "7") is None


def test_restore_undoes_a_move_and_refuses_to_clobber_someone_elses(
    mlflow_tracking_uri: str, trained_iris: RegisteredVersion
) -> None:
    c = registry.client(mlflow_tracking_uri)
    model = _name("reg-restore")
    v1 = _version(mlflow_tracking_uri, trained_iris, model, "champion")
    v2 = _version(mlflow_tracking_uri, trained_iris, model)
    v3 = _version(mlflow_tracking_uri, trained_iris, model)
    move = registry.AliasMove(model, "champion", previous_version=v1, new_version=v2)
    registry.record_previous(c, move)
    registry.set_alias(c, model, "champion", v2)
    assert c.get_model_version(model, v2).tags[previous_tag("champion")] == v1

    assert "moved back" in registry.restore(c, move)
    assert registry.alias_holder(c, model, "champion") == v1
    assert "already points" in registry.restore(c, move)  # idempotent

    registry.set_alias(c, model, "champion", v3)  # someone else promoted v3 meanwhile
    with pytest.raises(registry.RegistryError, match="not touching it"):
        registry.restore(c, move)
    assert registry.alias_holder(c, model, "champion") == v3


def test_restore_of_a_first_promotion_deletes_the_alias(
    mlflow_tracking_uri: str, trained_iris: RegisteredVersion
) -> None:
    c = registry.client(mlflow_tracking_uri)
    model = _name("reg-first")
    v1 = _version(mlflow_tracking_uri, trained_iris, model, "champion")
    registry.restore(c, registry.AliasMove(model, "champion", previous_version=None, new_version=v1))
    assert registry.alias_holder(c, model, "champion") is None


def test_rollback_target_resolution_and_refusals(mlflow_tracking_uri: str, trained_iris: RegisteredVersion) -> None:
    c = registry.client(mlflow_tracking_uri)
    model = _name("reg-target")
    with pytest.raises(registry.RegistryError, match="does not exist"):
        registry.resolve_rollback_target(c, model, "champion", "previous")
    v1 = _version(mlflow_tracking_uri, trained_iris, model)
    v2 = _version(mlflow_tracking_uri, trained_iris, model)
    v3 = _version(mlflow_tracking_uri, trained_iris, model, "champion")

    # No recorded predecessor: the newest older READY version.
    assert registry.resolve_rollback_target(c, model, "champion", "previous") == (v2, v3)
    # A recorded predecessor wins.
    c.set_model_version_tag(model, v3, previous_tag("champion"), v1)
    assert registry.resolve_rollback_target(c, model, "champion", "previous") == (v1, v3)
    assert registry.resolve_rollback_target(c, model, "champion", v2) == (v2, v3)

    with pytest.raises(registry.RegistryError, match="already holds"):
        registry.resolve_rollback_target(c, model, "champion", v3)
    with pytest.raises(registry.RegistryError, match="does not exist"):
        registry.resolve_rollback_target(c, model, "champion", "42")
    with pytest.raises(registry.RegistryError, match="positive integer"):
        registry.resolve_rollback_target(c, model, "champion", "v1")


def test_rollback_target_must_be_ready(
    mlflow_tracking_uri: str, trained_iris: RegisteredVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQL registry creates versions READY at once, so a pending one is simulated at the client."""
    c = registry.client(mlflow_tracking_uri)
    model = _name("reg-pending")
    v1 = _version(mlflow_tracking_uri, trained_iris, model)
    _version(mlflow_tracking_uri, trained_iris, model, "champion")
    real = registry.version_status
    monkeypatch.setattr(
        registry,
        "version_status",
        lambda client, m, v: registry.PENDING_REGISTRATION if v == v1 else real(client, m, v),
    )
    with pytest.raises(registry.RegistryError, match="PENDING_REGISTRATION, not READY"):
        registry.resolve_rollback_target(c, model, "champion", v1)


def test_example_rows_come_from_the_versions_own_input_example(
    mlflow_tracking_uri: str, trained_iris: RegisteredVersion
) -> None:
    version = _version(mlflow_tracking_uri, trained_iris, trained_iris.name)
    rows = registry.example_rows(mlflow_tracking_uri, trained_iris.name, version, n=2)
    assert len(rows) == 2
    assert set(rows[0]) == {"sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"}
    assert all(isinstance(value, float) for row in rows for value in row.values())
