"""Offline units of the API (no server): token format, hashing and scopes; Idempotency-Key ids and
fingerprints; the mapping of Airflow's DAG-run states; the catalog checks (the catalog's merge_params, one field
per wrong param); settings naming the variable; migrations; the OpenAPI document (every /v1 operation documents
401/403, every write its 4xx); the docs' variable table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.api import auth, db, idempotency, runs
from services.api.app import _field, create_app
from services.api.catalog import parse
from services.api.errors import ApiError
from services.api.routes.bodies import TokenRequest
from services.api.settings import Settings, SettingsError, markdown_table
from services.api.states import RunState, from_airflow, is_terminal, next_state
from services.api.store import decode_cursor, encode_cursor
from services.common import contract
from tests.services.api.conftest import catalog_document

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"


# --- tokens --------------------------------------------------------------------------------------
def test_tokens_are_random_prefixed_and_only_their_hash_matches() -> None:
    one, two = auth.new_token(), auth.new_token()
    assert one.token != two.token and one.id != two.id
    assert auth.token_id(one.token) == one.id and one.token.startswith(f"mlops_{one.id}_")
    assert one.token not in one.hash and len(one.hash) == 64
    assert auth.matches(one.token, one.hash) and not auth.matches(two.token, one.hash)
    assert not auth.matches(one.token[:-1] + ("A" if one.token[-1] != "A" else "B"), one.hash)
    for bad in ("", "mlops_", "Bearer x", f"mlops_{one.id}", one.token + "x", one.token.replace("mlops", "other")):
        assert auth.token_id(bad) is None


def test_scopes() -> None:
    assert auth.parse_scopes(["read", "train"]) == {auth.Scope.READ, auth.Scope.TRAIN}
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        auth.parse_scopes(["read", "root"])
    reader = auth.Principal("a", "r", frozenset({auth.Scope.READ}))
    assert reader.allows(auth.Scope.READ) and not reader.allows(auth.Scope.TRAIN)
    assert all(auth.ADMIN.allows(s) for s in auth.Scope)
    admin_scoped = auth.Principal("b", "x", frozenset({auth.Scope.ADMIN}))
    assert admin_scoped.allows(auth.Scope.DEPLOY)


def test_model_scoping_of_a_principal() -> None:
    scoped = auth.Principal("a", "iris", frozenset({auth.Scope.READ}), frozenset({"iris"}))
    assert scoped.may_use("iris") and not scoped.may_use("diabetes")
    scoped.check_model("iris")
    with pytest.raises(ApiError) as caught:
        scoped.check_model("diabetes")
    assert (caught.value.status, caught.value.field) == (403, "model") and "'diabetes'" in caught.value.detail
    assert scoped.model_filter() == ["iris"]
    assert auth.ADMIN.may_use("anything") and auth.ADMIN.model_filter() is None


def test_token_request_bounds() -> None:
    ok = TokenRequest.model_validate(
        {"name": "ci", "scopes": ["read"], "models": ["iris-classifier"], "expires_in": 60}
    )
    assert ok.models == ["iris-classifier"] and ok.expires_in == 60
    for bad in ({"expires_in": 0}, {"models": []}, {"models": ["Not A Name"]}, {"expires_in": 10**12}):
        with pytest.raises(ValidationError):
            TokenRequest.model_validate({"name": "ci", "scopes": ["read"], **bad})


# --- idempotency ---------------------------------------------------------------------------------
def test_run_ids_follow_caller_and_key() -> None:
    assert idempotency.run_id("a", "k") == idempotency.run_id("a", "k")
    assert idempotency.run_id("a", "k") != idempotency.run_id("b", "k")
    assert idempotency.run_id("a", "k") != idempotency.run_id("a", "k2")
    assert idempotency.run_id("a", "k\0b") != idempotency.run_id("a\0k", "b")
    run = idempotency.run_id("a", "k")
    assert idempotency.dag_run_id(run) == f"api__{run}"


def test_fingerprint_tells_requests_apart() -> None:
    base = idempotency.fingerprint("training", "m", {"model": "m", "params": {"C": 1, "x": 2}})
    assert base == idempotency.fingerprint("training", "m", {"params": {"x": 2, "C": 1}, "model": "m"})
    assert base != idempotency.fingerprint("training", "m", {"model": "m", "params": {"C": 2, "x": 2}})
    assert base != idempotency.fingerprint("rollback", "m", {"model": "m", "params": {"C": 1, "x": 2}})


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("abc", True),
        ("0b5a0a55-9a8e-4d3c-8f5e-2f1c4b6d7e80", True),
        ("", False),
        ("a b", False),
        ("é", False),
        ("x" * 201, False),
    ],
)
def test_key_problem(key: str, ok: bool) -> None:
    assert (idempotency.key_problem(key) is None) == ok


# --- states --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("airflow", "cancel", "expected"),
    [
        ("queued", False, RunState.QUEUED),
        ("running", False, RunState.RUNNING),
        ("success", False, RunState.SUCCESS),
        ("failed", False, RunState.FAILED),
        ("failed", True, RunState.CANCELLED),
        ("success", True, RunState.SUCCESS),
        ("RUNNING", False, RunState.RUNNING),
        ("up_for_retry", False, None),
        (None, False, None),
    ],
)
def test_airflow_states_map(airflow: str | None, cancel: bool, expected: RunState | None) -> None:
    assert from_airflow(airflow, cancel_requested=cancel) is expected


def test_terminal_states_stay_and_running_does_not_go_back() -> None:
    for terminal in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED):
        assert is_terminal(terminal)
        for observed in RunState:
            assert next_state(terminal, observed) is terminal
    assert next_state(RunState.RUNNING, RunState.QUEUED) is RunState.RUNNING
    assert next_state(RunState.QUEUED, RunState.RUNNING) is RunState.RUNNING
    assert next_state(RunState.QUEUED, RunState.SUCCESS) is RunState.SUCCESS
    assert next_state(RunState.RUNNING, None) is RunState.RUNNING
    assert not is_terminal("queued") and not is_terminal("running")


# --- catalog -------------------------------------------------------------------------------------
def test_catalog_checks_name_the_field() -> None:
    catalog = parse(catalog_document())
    iris = catalog.model("iris-classifier")
    assert iris.dag_id == "train_iris_classifier" and iris.rollback_dag_id == "rollback_iris_classifier"
    assert iris.promote_alias == "champion"
    assert catalog.check_params(iris, {"C": 2}) == {"C": 2.0, "max_iter": 200, "solver": "lbfgs"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"C": "x"}, "params.C"),
        ({"max_iter": 1.5}, "params.max_iter"),
        ({"solver": True}, "params.solver"),
        ({"nope": 1}, "params.nope"),
        ({"C": None}, "params.C"),
    ]
    for params, field in cases:
        with pytest.raises(ApiError) as caught:
            catalog.check_params(iris, params)
        assert (caught.value.status, caught.value.field) == (422, field)
    with pytest.raises(ApiError) as missing:
        catalog.model("nope")
    assert (missing.value.status, missing.value.field) == (404, "model")
    with pytest.raises(ApiError) as profile:
        catalog.check_profile(iris, "huge")
    assert (profile.value.status, profile.value.field) == (422, "profile")
    with pytest.raises(ApiError, match="trains on the profile 'small'") as other:
        catalog.check_profile(iris, "gpu")
    assert other.value.field == "profile"
    catalog.check_profile(iris, "small")
    catalog.check_profile(iris, None)


# --- views, cursors, errors ----------------------------------------------------------------------
def _row(**over: Any) -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = {
        "id": uuid.uuid4(),
        "kind": "training",
        "model": "m",
        "request": {"model": "m", "params": {"C": 1}},
        "state": "success",
        "airflow_state": "success",
        "dag_id": "train_m",
        "dag_run_id": "api__x",
        "mlflow_run_id": "r",
        "metrics": {"acc": 1.0},
        "registered_version": "3",
        "version_aliases": ["champion"],
        "gate": {"decision": "passed", "reason": "ok"},
        "error": None,
        "cancel_requested": False,
        "created_at": now,
        "updated_at": now,
        "started_at": now,
        "finished_at": None,
    }
    return {**row, **over}


def test_view_of_a_training() -> None:
    row = _row()
    view = runs.view(row)
    assert view["promoted"] and view["aliases"] == ["champion"] and view["registered_version"] == "3"
    assert view["links"] == {"self": f"/v1/trainings/{row['id']}", "events": f"/v1/trainings/{row['id']}/events"}
    assert runs.view(_row(version_aliases=[]))["promoted"] is False
    assert view["created_at"] == "2026-01-01T00:00:00+00:00" and view["finished_at"] is None


def test_cursor_round_trip_and_garbage() -> None:
    row = _row()
    assert decode_cursor(encode_cursor(row)) == (row["created_at"], row["id"])
    for garbage in ("x", "e30", "!!!", encode_cursor(row)[:-3]):
        with pytest.raises(ApiError) as caught:
            decode_cursor(garbage)
        assert caught.value.field == "cursor"


def test_validation_locations_become_field_names() -> None:
    assert _field(("body", "params", "C")) == "params.C"
    assert _field(("header", "idempotency-key")) == "Idempotency-Key"
    assert _field(("query", "limit")) == "limit"
    assert _field(("path", "id")) == "id"
    assert _field(("body",)) == "body"


# --- settings and migrations ---------------------------------------------------------------------
REQUIRED = {
    contract.DATABASE_HOST: "127.0.0.1",
    contract.API_DATABASE_NAME: "api",
    contract.API_DATABASE_USER: "api",
    contract.API_ADMIN_TOKEN: "a" * 32,
    contract.API_AIRFLOW_URL: "http://airflow:8080",
    contract.API_AIRFLOW_USERNAME: "mlops-api",
    contract.API_AIRFLOW_PASSWORD: "pw",
    contract.MLFLOW_TRACKING_URI: "http://mlflow:5000",
    contract.MODEL_CATALOG: "/catalog.json",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in contract.ALL_VARS:
        monkeypatch.delenv(var.name, raising=False)
        monkeypatch.delenv(var.file_variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no MLflow credentials file of the developer's
    for var, value in REQUIRED.items():
        monkeypatch.setenv(var.name, value)
    return monkeypatch


def test_settings_defaults(env: pytest.MonkeyPatch) -> None:
    s = Settings.from_env()
    assert (s.port, s.database_port, s.database_sslmode, s.reconcile_seconds) == (
        contract.API_PORT,
        5432,
        "prefer",
        5.0,
    )
    assert "pw" not in repr(s) and "a" * 32 not in repr(s)
    assert "password" not in s.conninfo() and s.connect_kwargs() == {"user": "api"}


def test_credentials_are_read_from_files_and_the_database_ones_again_per_connection(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cluster's way (services/common/contract.py): every credential in a mounted file named by `<NAME>_FILE`,
    MLflow's in its own credentials file; the plain variables are not set at all."""
    files = {
        contract.API_ADMIN_TOKEN: "t" * 40 + "\n",
        contract.API_AIRFLOW_PASSWORD: "airflow-pw\n",
        contract.API_DATABASE_USER: "api_blue\n",
        contract.API_DATABASE_PASSWORD: "first-pw\n",
    }
    for var, content in files.items():
        env.delenv(var.name, raising=False)
        path = tmp_path / var.name
        path.write_text(content)
        env.setenv(var.file_variable, str(path))
    mlflow_file = contract.mlflow_credentials_file(str(tmp_path / "home"))
    mlflow_file.parent.mkdir(parents=True)
    mlflow_file.write_text(contract.mlflow_credentials_ini("mlops-pipelines", "mlflow-pw"))
    s = Settings.from_env()
    assert (s.admin_token, s.airflow_password) == ("t" * 40, "airflow-pw")
    assert (s.mlflow_username, s.mlflow_password) == ("mlops-pipelines", "mlflow-pw")
    assert s.connect_kwargs() == {"user": "api_blue", "password": "first-pw"}
    # a rotation swaps the mounted files: the next connection uses the new role and password
    (tmp_path / contract.API_DATABASE_USER.name).write_text("api_green\n")
    (tmp_path / contract.API_DATABASE_PASSWORD.name).write_text("second-pw\n")
    assert s.connect_kwargs() == {"user": "api_green", "password": "second-pw"}


def test_an_unreadable_credential_file_names_its_variable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.delenv(contract.API_ADMIN_TOKEN.name)
    env.setenv(contract.API_ADMIN_TOKEN.file_variable, str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=contract.API_ADMIN_TOKEN.file_variable):
        Settings.from_env()


def test_the_servers_ca_reaches_libpq_as_sslrootcert(env: pytest.MonkeyPatch) -> None:
    """psycopg parses the conninfo back into the sslmode and the CA file (none unless given)."""
    from psycopg.conninfo import conninfo_to_dict

    assert "sslrootcert" not in conninfo_to_dict(Settings.from_env().conninfo())
    env.setenv(contract.API_DATABASE_SSLMODE.name, "verify-full")
    env.setenv(contract.API_DATABASE_SSLROOTCERT.name, "/etc/postgres ca/ca.crt")
    parsed = conninfo_to_dict(Settings.from_env().conninfo())
    assert (parsed["sslmode"], parsed["sslrootcert"]) == ("verify-full", "/etc/postgres ca/ca.crt")


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (contract.API_DATABASE_SSLROOTCERT, "ca.crt", "absolute path"),
        (contract.API_ADMIN_TOKEN, "short", "at least"),
        (contract.API_AIRFLOW_URL, "airflow:8080", "http(s) URL"),
        (contract.API_DATABASE_SSLMODE, "maybe", "one of"),
        (contract.API_PORT_VAR, "eighty", "must be a int"),
        (contract.API_RECONCILE_SECONDS, "0", ">="),
    ],
)
def test_bad_settings_name_the_variable(
    env: pytest.MonkeyPatch, var: contract.EnvVar, value: str, message: str
) -> None:
    env.setenv(var.name, value)
    with pytest.raises(SettingsError, match=var.name) as caught:
        Settings.from_env()
    assert message in str(caught.value)


def test_missing_required_setting(env: pytest.MonkeyPatch) -> None:
    env.delenv(contract.API_AIRFLOW_PASSWORD.name)
    with pytest.raises(SettingsError, match=contract.API_AIRFLOW_PASSWORD.name):
        Settings.from_env()


def test_migrations_are_numbered_in_order(tmp_path: Path) -> None:
    found = db.migrations()
    assert [v for v, _, _ in found] == list(range(1, len(found) + 1))
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "1_b.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match=r"1_b\.sql"):
        db.migrations(tmp_path)
    (tmp_path / "1_b.sql").unlink()
    (tmp_path / "0001_c.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="two migrations with version 1"):
        db.migrations(tmp_path)


# --- the OpenAPI document ------------------------------------------------------------------------
def test_openapi_documents_auth_and_errors(env: pytest.MonkeyPatch) -> None:
    doc = create_app(Settings.from_env()).openapi()
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) == 18  # + GET, PUT and DELETE /v1/models/{model}/routing
    for path, method, op in operations:
        assert op.get("summary"), (method, path)
        if path.startswith("/v1/"):
            assert {"401", "403", "422", "429"} <= set(op["responses"]), (method, path)
            assert "Retry-After" in op["responses"]["429"]["headers"], (method, path)
            assert op.get("security"), (method, path)
        if method == "post" and "cancel" not in path and "tokens" not in path:
            assert {"202", "404", "409", "503"} <= set(op["responses"]), (method, path)
    trainings = doc["paths"]["/v1/trainings"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in trainings["parameters"])
    stream = doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]


def test_docs_show_the_current_variables() -> None:
    assert markdown_table() in DOC.read_text(), "regenerate with: python -m services.api.settings"
