"""`database.mode: external`, an existing PostgreSQL outside the cluster (on premises): its settings are refused with
the key named (host, admin, CIDR, a plaintext password, the CA verify-full needs, a provisioned app's credentials);
the program under mocks passes every harness check with no StatefulSet, exports the external host, keeps the admin
password secret, lets only the database clients out to `database.cidr` on `database.port`, and gives every
connection (bootstrap, MLflow, Airflow, the API) the sslmode and, for verify-full, the server's CA as a mounted file
where libpq looks for it; the bootstrap SQL, replayed for real against the local
PostgreSQL as an admin with CREATEDB and CREATEROLE but no superuser, is idempotent and isolates the roles; and the
provisioned option's check passes when the given credentials work and fails naming the app when one does not."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from components.artifact_store import ROTATION_EPOCH, rotation_plan
from components.database import (
    BOOTSTRAP_INPUTS_ANNOTATION,
    CA_DIR,
    SERVER_CA,
    AppDatabase,
    bootstrap_sql,
    login_role,
    password_variable,
    server_ca_path,
    verify_script,
)
from harness import checks
from harness.mocks import SecretValue, reveal
from harness.run import ROOT, ProgramRun, read_stack_file, run_program
from services.common import contract
from stacks.settings import SettingsError, load_settings
from tests.infra.test_data_layer import _can_connect, _run_sql, _secret_files, app_names, bootstrap_jobs
from tests.infra.test_network_policies import Workload, allowed, rendered_pods, tcp

__all__ = ["app_names"]  # the fixture, shared with test_data_layer

HOST, PORT, CIDR = "pg.corp.example.com", 6432, "10.50.0.0/24"
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY2E=\n-----END CERTIFICATE-----\n"
EXTERNAL = {
    "database.mode": "external",
    "database.host": HOST,
    "database.port": str(PORT),
    "database.sslmode": "verify-full",
    "database.caCertificate": CA,
    "database.adminUser": "platform_admin",
    "database.cidr": CIDR,
}
GIVEN = {
    app: (f"{app.lower()}_db", f"{app.lower()}_user") for app in ("mlflow", "mlflowAuth", "airflow", "platformApi")
}


def _secure(*keys: str) -> str:
    return "".join(f"  mlops-platform:{key}:\n    secure: v1:AAAA:BBBB\n" for key in keys)


def _stack_file(tmp_path: Path, *secret_keys: str) -> Path:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text((ROOT / "Pulumi.dev.yaml").read_text() + _secure(*secret_keys))
    return path


def _provisioned_overrides() -> dict[str, str]:
    out = {k: v for k, v in EXTERNAL.items() if not k.startswith("database.admin")}
    out["database.provisioned"] = "true"
    for app, (database, user) in GIVEN.items():
        out[f"database.credentials.{app}.database"] = database
        out[f"database.credentials.{app}.user"] = user
    return out


# --- settings ------------------------------------------------------------------------------------------------------
def _problems(changes: dict[str, str | None], secret: tuple[str, ...] = ("database.adminPassword",)) -> str:
    cfg = read_stack_file("dev")
    config = dict(cfg.config)
    for key, value in {**EXTERNAL, **{k: "pw" for k in secret}, **changes}.items():
        if value is None:
            config.pop(f"mlops-platform:{key}", None)
        else:
            config[f"mlops-platform:{key}"] = value
    keys = set(cfg.secret_keys) | {f"mlops-platform:{k}" for k in secret}
    with pytest.raises(SettingsError) as err:
        load_settings("dev", config, keys)
    return str(err.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"database.host": None}, "mlops-platform:database.host is required when database.mode is external"),
        ({"database.host": "not a host"}, "mlops-platform:database.host must be a DNS name or an IP address"),
        ({"database.port": "70000"}, "mlops-platform:database.port must be <= 65535"),
        ({"database.sslmode": "on"}, "mlops-platform:database.sslmode must be one of disable, allow, prefer"),
        ({"database.cidr": None}, "mlops-platform:database.cidr is required when database.mode is external"),
        ({"database.cidr": "10.50.0.0/33"}, "mlops-platform:database.cidr must be a CIDR block"),
        ({"database.cidr": "0.0.0.0/0"}, "mlops-platform:database.cidr must be a CIDR block"),
        ({"database.adminUser": None}, "mlops-platform:database.adminUser is required when database.mode is external"),
        ({"database.adminUser": "Admin-1"}, "mlops-platform:database.adminUser must match"),
        ({"database.caCertificate": None}, "mlops-platform:database.caCertificate is required when database.sslmode"),
        ({"database.caCertificate": "hello"}, "mlops-platform:database.caCertificate must be PEM"),
    ],
)
def test_each_external_setting_problem_names_its_key(changes: dict[str, str | None], expected: str) -> None:
    problems = _problems(changes)
    assert "Pulumi.dev.yaml: " + expected in problems, problems


def test_the_admin_password_is_required_and_refused_in_plaintext() -> None:
    missing = _problems({}, secret=())
    assert "mlops-platform:database.adminPassword is required when database.mode is external" in missing
    plaintext = _problems({"database.adminPassword": "hunter2"}, secret=())
    assert "Pulumi.dev.yaml: mlops-platform:database.adminPassword is a secret" in plaintext
    assert "hunter2" not in plaintext


def test_verify_ca_without_its_ca_is_refused_and_require_needs_none() -> None:
    assert "database.caCertificate is required when database.sslmode is verify-ca" in _problems(
        {"database.sslmode": "verify-ca", "database.caCertificate": None}
    )
    cfg = read_stack_file("dev")
    config = {**cfg.config, **{f"mlops-platform:{k}": v for k, v in EXTERNAL.items()}}
    config.update({"mlops-platform:database.sslmode": "require", "mlops-platform:database.adminPassword": "pw"})
    del config["mlops-platform:database.caCertificate"]
    s = load_settings("dev", config, {*cfg.secret_keys, "mlops-platform:database.adminPassword"})
    assert s.database_sslmode == "require" and s.database_egress_cidrs == (CIDR,) and s.database_port == PORT


def test_provisioned_credentials_are_checked_for_presence() -> None:
    given = _provisioned_overrides()
    given.pop("database.credentials.airflow.user")
    passwords = tuple(f"database.credentials.{app}.password" for app in GIVEN if app != "platformApi")
    problems = _problems({**given, "database.adminUser": None}, secret=passwords)
    assert "mlops-platform:database.credentials.airflow.user is required when database.provisioned is true" in (
        problems
    )
    assert "database.credentials.platformApi.password is required when database.provisioned is true" in problems
    assert "database.adminUser is required" not in problems and "adminPassword" not in problems
    plaintext = _problems({**_provisioned_overrides(), "database.credentials.mlflow.password": "pw"}, secret=())
    assert "mlops-platform:database.credentials.mlflow.password is a secret" in plaintext


# --- the program under mocks ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def external_run(tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    path = _stack_file(tmp_path_factory.mktemp("external"), "database.adminPassword")
    return run_program("dev", path, overrides=EXTERNAL)


@pytest.fixture(scope="module")
def provisioned_run(tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    passwords = [f"database.credentials.{app}.password" for app in GIVEN]
    path = _stack_file(tmp_path_factory.mktemp("provisioned"), *passwords)
    return run_program("dev", path, overrides=_provisioned_overrides())


def _named(run: ProgramRun, kind: str, name: str) -> Any:
    (found,) = [
        r for r in run.kubernetes_objects() if r.manifest["kind"] == kind and r.manifest["metadata"]["name"] == name
    ]
    return found


def _all_named(run: ProgramRun, kind: str, name: str) -> list[Any]:
    return [
        r for r in run.kubernetes_objects() if r.manifest["kind"] == kind and r.manifest["metadata"]["name"] == name
    ]


def _namespace(obj: Any) -> str:
    return str(obj.manifest["metadata"]["namespace"])


def _job_env(run: ProgramRun) -> dict[str, Any]:
    (job,) = bootstrap_jobs(run)
    return {e["name"]: e.get("value") for e in job.manifest["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("which", ["admin", "provisioned"])
def test_the_program_passes_every_harness_check(which: str, request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue("external_run" if which == "admin" else "provisioned_run")
    assert {k: v for k, v in checks.all_problems(run, "1.30").items() if v} == {}
    assert not run.of_type("kubernetes:apps/v1:StatefulSet") and not run.of_type("aws:rds/instance:Instance")
    assert not [r for r in run.kubernetes_objects() if r.manifest["metadata"]["name"] == "postgres"]
    assert run.exports["databaseHost"].value == HOST and not run.exports["databaseHost"].secret


def test_the_bootstrap_reaches_the_server_as_the_admin_with_its_sslmode_and_ca(external_run: ProgramRun) -> None:
    env = _job_env(external_run)
    assert env["PGHOST"] == HOST and env["PGPORT"] == str(PORT) and env["PGUSER"] == "platform_admin"
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"].endswith("/ca.crt")
    (job,) = bootstrap_jobs(external_run)
    (server_ca,) = [c for c in _all_named(external_run, "ConfigMap", SERVER_CA) if _namespace(c) == _namespace(job)]
    assert server_ca.manifest["data"]["ca.crt"] == CA
    volumes = job.manifest["spec"]["template"]["spec"]["volumes"]
    assert {"name": "ca", "configMap": {"name": SERVER_CA}} in volumes
    secret = _named(external_run, "Secret", "db-bootstrap")
    data = secret.inputs["stringData"]
    assert isinstance(data, SecretValue) or isinstance(data["PGPASSWORD"], SecretValue)
    assert reveal(data)["PGPASSWORD"] == "harness-secret-value-for-mlops-platform:database.adminPassword"
    database = next(r for r in external_run.registrations if r.type == "mlops:platform:Database")
    assert isinstance(database.registered_outputs["admin_password"], SecretValue)


def test_the_bootstrap_runs_again_when_how_it_connects_changes(external_run: ProgramRun, tmp_path: Path) -> None:
    def digest(run: ProgramRun) -> str:
        (job,) = bootstrap_jobs(run)
        return job.manifest["spec"]["template"]["metadata"]["annotations"][BOOTSTRAP_INPUTS_ANNOTATION]

    other = run_program(
        "dev", _stack_file(tmp_path, "database.adminPassword"), overrides={**EXTERNAL, "database.sslmode": "require"}
    )
    assert digest(other) != digest(external_run)
    assert "harness-secret-value" not in digest(external_run)


def test_every_connection_carries_the_sslmode(external_run: ProgramRun) -> None:
    airflow = reveal(_named(external_run, "Secret", "airflow-metadata").inputs["stringData"])["connection"]
    assert re.match(r"postgresql://airflow_[ab]:", airflow) and f"@{HOST}:{PORT}/airflow?sslmode=verify-full" in airflow
    (api,) = [
        r
        for r in external_run.kubernetes_objects()
        if r.manifest["kind"] == "Deployment" and r.manifest["metadata"]["name"] == "platform-api"
    ]
    api_env = {e["name"]: e.get("value") for e in api.manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert api_env[contract.API_DATABASE_SSLMODE.name] == "verify-full"
    mlflow = next(reveal(r.inputs) for r in external_run.helm_releases() if reveal(r.inputs)["chart"] == "mlflow")
    assert mlflow["values"]["extraEnvVars"]["PGSSLMODE"] == "verify-full"
    assert mlflow["values"]["backendStore"]["postgres"]["port"] == PORT


def test_every_database_client_verifies_the_server_with_its_ca(external_run: ProgramRun) -> None:
    """verify-full: the CA reaches MLflow, Airflow (every container, the API's Airflow-user Job too) and the API, as a
    file from a ConfigMap in its own namespace, where libpq's PGSSLROOTCERT (the API: its sslrootcert) points."""
    path, mount = server_ca_path(), {"mountPath": CA_DIR, "readOnly": True}
    copies = {_namespace(c): c.manifest["data"]["ca.crt"] for c in _all_named(external_run, "ConfigMap", SERVER_CA)}
    apps = {_namespace(r) for r in external_run.kubernetes_objects() if r.manifest["kind"] == "Deployment"}
    mlflow = next(reveal(r.inputs) for r in external_run.helm_releases() if reveal(r.inputs)["chart"] == "mlflow")
    airflow = next(reveal(r.inputs) for r in external_run.helm_releases() if reveal(r.inputs)["chart"] == "airflow")
    assert set(copies.values()) == {CA}
    assert {mlflow["namespace"], airflow["namespace"]} <= set(copies)
    values = mlflow["values"]
    assert values["extraEnvVars"]["PGSSLROOTCERT"] == path
    (volume,) = [v for v in values["extraVolumes"] if v.get("configMap") == {"name": SERVER_CA}]
    assert {"name": volume["name"], **mount} in values["extraVolumeMounts"]
    values = airflow["values"]
    assert {"name": "PGSSLROOTCERT", "value": path} in values["env"]
    (volume,) = [v for v in values["volumes"] if v.get("configMap") == {"name": SERVER_CA}]
    assert {"name": volume["name"], **mount} in values["volumeMounts"]
    (api,) = _all_named(external_run, "Deployment", "platform-api")
    assert _namespace(api) in copies and _namespace(api) in apps
    _assert_mounted(api.manifest["spec"]["template"]["spec"], contract.API_DATABASE_SSLROOTCERT.name, path)
    (user_job,) = [
        j
        for j in external_run.kubernetes_objects()
        if j.manifest["kind"] == "Job" and "airflow-user" in j.manifest["metadata"]["name"]
    ]
    assert _namespace(user_job) in copies
    _assert_mounted(user_job.manifest["spec"]["template"]["spec"], "PGSSLROOTCERT", path)


def _assert_mounted(pod: dict[str, Any], variable: str, path: str) -> None:
    """The pod's first container has `variable` = `path`, and the CA's ConfigMap is mounted there."""
    (container,) = pod["containers"][:1]
    assert {"name": variable, "value": path} in container["env"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap") == {"name": SERVER_CA}]
    (mounted,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert f"{mounted['mountPath']}/ca.crt" == path and mounted.get("readOnly") is True


def test_database_clients_get_out_to_the_servers_range_on_its_port_only(external_run: ProgramRun) -> None:
    policies = [r.manifest for r in external_run.kubernetes_objects() if r.manifest["kind"] == "NetworkPolicy"]
    pods = {
        name: Workload(name, ns, labels, ports, "10.244.0.10")
        for name, ns, labels, ports in rendered_pods(external_run)
    }
    mlflow = Workload("mlflow", "mlops-dev-mlflow", {"app.kubernetes.io/name": "mlflow"}, tcp(5000), "10.244.1.10")
    server = Workload("postgres", None, {}, tcp(PORT), "10.50.0.7")
    elsewhere = Workload("elsewhere", None, {}, tcp(PORT), "10.51.0.7")
    for client in (pods["db-bootstrap"], pods["platform-api"], mlflow):
        assert allowed(policies, client, server, (PORT, "TCP")), client.name
        assert not allowed(policies, client, server, (5432, "TCP")), client.name
        assert not allowed(policies, client, elsewhere, (PORT, "TCP")), client.name
    serving = next(w for n, w in pods.items() if w.namespace.endswith("-serving"))
    assert not allowed(policies, serving, server, (PORT, "TCP"))


def test_provisioned_uses_the_given_credentials_and_only_checks_them(provisioned_run: ProgramRun) -> None:
    assert not [
        r for r in provisioned_run.of_type("random:index/randomPassword:RandomPassword") if "database" in r.name
    ]
    sql = _named(provisioned_run, "ConfigMap", "db-bootstrap-sql").manifest["data"]
    assert set(sql) == {"verify.sh"} and "CREATE" not in sql["verify.sh"]
    env = _job_env(provisioned_run)
    assert "PGUSER" not in env and env["PGSSLMODE"] == "verify-full"
    job_secret = reveal(_named(provisioned_run, "Secret", "db-bootstrap").inputs["stringData"])
    assert "PGPASSWORD" not in job_secret
    assert job_secret[password_variable("mlflow_user").upper()].startswith("harness-secret-value-for-")
    mlflow_db = reveal(_named(provisioned_run, "Secret", "mlflow-db").inputs["stringData"])
    assert mlflow_db["username"] == "mlflow_user"
    airflow = reveal(_named(provisioned_run, "Secret", "airflow-metadata").inputs["stringData"])["connection"]
    assert airflow.startswith("postgresql://airflow_user:") and airflow.endswith("/airflow_db?sslmode=verify-full")
    mlflow = next(reveal(r.inputs) for r in provisioned_run.helm_releases() if reveal(r.inputs)["chart"] == "mlflow")
    assert mlflow["values"]["backendStore"]["postgres"]["database"] == "mlflow_db"


# --- for real: the local PostgreSQL as the external server ---------------------------------------------------------
@pytest.mark.servers
def test_the_bootstrap_runs_twice_as_a_createdb_createrole_admin(
    app_names: tuple[str, str, str], tmp_path: Path
) -> None:
    mlflow, airflow, admin = app_names
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {admin} LOGIN CREATEDB CREATEROLE NOSUPERUSER")
    apps = [
        AppDatabase(mlflow, mlflow, "ns", "s", "username-password", "mlflow"),
        AppDatabase(airflow, airflow, "ns", "s", "sqlalchemy-url", "airflow"),
    ]
    passwords = {login_role(a.role, k): "pw-" + uuid.uuid4().hex for a in apps for k in (0, 1)}
    sql = bootstrap_sql(apps, rotation_plan(ROTATION_EPOCH, 30))
    _run_sql(sql, admin, passwords, tmp_path)
    _run_sql(sql, admin, passwords, tmp_path)  # idempotent
    mlflow_login, airflow_login = login_role(mlflow, 0), login_role(airflow, 0)
    assert _can_connect(mlflow_login, mlflow) and _can_connect(airflow_login, airflow)
    assert not _can_connect(mlflow_login, airflow) and not _can_connect(airflow_login, mlflow)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (admin,)).fetchone()
        assert row == (False,)


def _verify(apps: list[AppDatabase], passwords: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The provisioned check as the Job runs it: the given passwords in the mounted Secret's files, none in env."""
    secrets = _secret_files(tmp_path, passwords)
    script = tmp_path / "verify.sh"
    script.write_text(verify_script(apps, str(secrets)))
    home = tmp_path / "verify-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PGHOST": "127.0.0.1", "PGSSLMODE": "prefer"}
    return subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.servers
def test_the_provisioned_check_passes_with_working_credentials_and_names_the_app_that_fails(
    app_names: tuple[str, str, str], tmp_path: Path
) -> None:
    mlflow, airflow, _ = app_names
    apps = [
        AppDatabase(mlflow, mlflow, "ns", "s", "username-password", "mlflow"),
        AppDatabase(airflow, airflow, "ns", "s", "sqlalchemy-url", "airflow"),
    ]
    # what the server's own team provisioned: the platform's own scheme, the given roles being the login roles *_a
    owners = apps
    passwords = {login_role(a.role, k): "pw-" + uuid.uuid4().hex for a in owners for k in (0, 1)}
    _run_sql(bootstrap_sql(owners, rotation_plan(ROTATION_EPOCH, 30)), "postgres", passwords, tmp_path)
    apps = [AppDatabase(a.database, login_role(a.role, 0), "ns", "s", a.secret_format, a.app) for a in owners]
    mlflow, airflow = apps[0].role, apps[1].role
    ok = _verify(apps, passwords, tmp_path)
    assert ok.returncode == 0, ok.stderr
    # Airflow given a database its role may not connect to (another app's): refused, Airflow named, MLflow not
    wrong = [apps[0], AppDatabase(mlflow, airflow, "ns", "s", "sqlalchemy-url", "airflow")]
    failed = _verify(wrong, passwords, tmp_path)
    assert failed.returncode != 0
    assert f"airflow: cannot connect to database {mlflow} as {airflow}" in failed.stderr
    assert "mlflow:" not in failed.stderr.replace(f"database {mlflow}", "")
