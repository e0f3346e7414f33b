"""The platform API in the whole program, for both stacks under mocks: its namespace at Pod Security `restricted`;
its Deployment sized and imaged from the stack's `api.*` and `images.api` settings; its database and role created by
the bootstrap (the connection Secret it reads is the Database component's, the bootstrap SQL carries its role); the
catalog it mounts is byte for byte Airflow's; the endpoints contract in its namespace; TLS as the bootstrap connects
(RDS in prod, in-cluster in dev) and the stack's NetworkPolicies letting it reach that database; it waits for the
bootstrap and Airflow; Airflow creates DAGs unpaused so that the API's triggers run; the exports name it, the admin
token only as a secret.
With the real PostgreSQL: the bootstrap SQL of each stack's app databases lets the API's role run the API's own
migrations in its database and nowhere else. The `api` dependency group the image installs is in the lock and holds
every library the API imports when it starts."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib.metadata
import re
import sys
import tomllib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from components.artifact_store import ROTATION_EPOCH, rotation_plan
from components.database import AppDatabase, bootstrap_sql, login_role
from components.namespaces import NamespaceRef
from components.platform_api import ADMIN_TOKEN_SECRET, AIRFLOW_USER_JOB
from harness.mocks import SecretValue, reveal
from harness.run import ROOT, ProgramRun, read_stack_file
from infra.data_layer import API_DB_SECRET, app_databases
from infra.platform import namespace_levels
from infra.platform_services import catalog_json
from services.api import db as api_db
from services.common import contract
from stacks.settings import StackSettings, load_settings
from tests.infra.test_data_layer import _can_connect, _run_sql

STACKS = ["dev", "prod"]
API_COMPONENT = "mlops:platform:PlatformApi"


def settings(stack: str) -> StackSettings:
    cfg = read_stack_file(stack)
    return load_settings(stack, cfg.config, set(cfg.secret_keys), cfg.source)


def stack_apps(s: StackSettings) -> dict[str, AppDatabase]:
    """The stack's app databases, their Secrets in the stack's namespaces (by name)."""
    return app_databases(s, {service: NamespaceRef(s.namespace(service)) for service in namespace_levels(s)})


def k8s(run: ProgramRun, kind: str, namespace: str | None = None, name: str | None = None) -> list[Any]:
    """Registrations of Kubernetes objects of `kind` (in `namespace`, named `name` when given)."""
    out = []
    for r in run.kubernetes_objects():
        meta = r.manifest["metadata"]
        if r.manifest["kind"] == kind and namespace in (None, meta.get("namespace")) and name in (None, meta["name"]):
            out.append(r)
    return out


def api_container(run: ProgramRun, stack: str) -> dict[str, Any]:
    (deployment,) = k8s(run, "Deployment", f"mlops-{stack}-api", "platform-api")
    (container,) = deployment.manifest["spec"]["template"]["spec"]["containers"]
    return container


def ancestors(run: ProgramRun, registration: Any) -> list[str]:
    """Types of the registration's parents, nearest first."""
    by_urn, out, parent = run.by_urn(), [], registration.parent
    while parent in by_urn:
        out.append(by_urn[parent].type)
        parent = by_urn[parent].parent
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_api_runs_in_its_restricted_namespace_as_the_settings_say(stack: str, stack_run: Any) -> None:
    run, s = stack_run(stack), settings(stack)
    (namespace,) = k8s(run, "Namespace", name=f"mlops-{stack}-api")
    assert namespace.manifest["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (component,) = [r for r in run.registrations if r.type == API_COMPONENT]
    assert component.name == "api"
    (deployment,) = k8s(run, "Deployment", f"mlops-{stack}-api", "platform-api")
    assert deployment.manifest["spec"]["replicas"] == s.api.replicas == (2 if stack == "prod" else 1)
    container = api_container(run, stack)
    assert container["image"] == s.api_image
    assert container["image"].startswith(f"{s.images.registry}/api")
    if stack == "prod":
        assert "@sha256:" in container["image"]
    assert container["resources"] == {"requests": dict(s.api.requests), "limits": dict(s.api.limits)}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[contract.API_AIRFLOW_USERNAME.name] == s.api.airflow_user
    assert float(env[contract.API_RECONCILE_SECONDS.name]) == s.api.reconcile_seconds
    assert float(env[contract.API_EVENTS_POLL_SECONDS.name]) == s.api.events_poll_seconds
    assert float(env[contract.API_TOKEN_TTL.name]) == s.api.token_ttl_days * 86_400
    assert float(env[contract.API_TOKEN_MAX_TTL.name]) == s.api.token_max_ttl_days * 86_400
    assert float(env[contract.API_RATE_LIMIT_PER_SECOND.name]) == s.api.rate_limit_per_second
    assert int(env[contract.API_RATE_LIMIT_BURST.name]) == s.api.rate_limit_burst
    (job,) = k8s(run, "Job", f"mlops-{stack}-airflow", AIRFLOW_USER_JOB)
    (user_container,) = job.manifest["spec"]["template"]["spec"]["containers"]
    assert user_container["image"] == s.airflow_image.reference  # the Airflow the user is created in


@pytest.mark.parametrize("stack", STACKS)
def test_database_secret_and_role_come_from_the_bootstrap(stack: str, stack_run: Any) -> None:
    run, s = stack_run(stack), settings(stack)
    apps = stack_apps(s)
    api = apps["platform_api"]
    assert (api.database, api.role, api.namespace.name, api.secret_name, api.secret_format) == (
        "platform_api",
        "platform_api",
        f"mlops-{stack}-api",
        API_DB_SECRET,
        "username-password",
    )
    env = {e["name"]: e for e in api_container(run, stack)["env"]}
    assert env[contract.API_DATABASE_NAME.name]["value"] == "platform_api"
    for var, key in ((contract.API_DATABASE_USER, "username"), (contract.API_DATABASE_PASSWORD, "password")):
        # the bootstrap's connection Secret mounted as files; `<NAME>_FILE` names each (credentials as files)
        assert env[var.file_variable]["value"] == f"/var/run/secrets/mlops/{API_DB_SECRET}/{key}"
    (secret,) = k8s(run, "Secret", f"mlops-{stack}-api", API_DB_SECRET)
    assert "mlops:platform:Database" in ancestors(run, secret)
    data = secret.inputs["stringData"]
    assert reveal(data)["username"] in ("platform_api_a", "platform_api_b")  # the active login role
    assert isinstance(data, SecretValue) or isinstance(data["password"], SecretValue)
    (sql,) = k8s(run, "ConfigMap", f"mlops-{stack}-data", "db-bootstrap-sql")
    text = sql.manifest["data"]["bootstrap.sql"]
    days = s.artifacts.key_rotation_days
    period = int(re.search(r"^-- rotation period (\d+):", text, re.M).group(1))  # type: ignore[union-attr]
    assert text == bootstrap_sql(
        list(apps.values()), rotation_plan(ROTATION_EPOCH + timedelta(days=period * days), days)
    )
    assert "CREATE DATABASE platform_api OWNER platform_api" in sql.manifest["data"]["bootstrap.sql"]


@pytest.mark.parametrize("stack", STACKS)
def test_api_sees_airflows_catalog_and_the_endpoints_contract(stack: str, stack_run: Any) -> None:
    run, s = stack_run(stack), settings(stack)
    name = contract.MODEL_CATALOG_CONFIGMAP
    (api_catalog,) = k8s(run, "ConfigMap", f"mlops-{stack}-api", name)
    (airflow_catalog,) = k8s(run, "ConfigMap", f"mlops-{stack}-airflow", name)
    assert (
        api_catalog.manifest["data"]
        == airflow_catalog.manifest["data"]
        == {contract.MODEL_CATALOG_KEY: catalog_json(s)}
    )
    (endpoints,) = k8s(run, "ConfigMap", f"mlops-{stack}-api", contract.ENDPOINTS_CONFIGMAP)
    assert set(endpoints.manifest["data"]) == {v.name for v in contract.CONFIGMAP_VARS}
    assert k8s(run, "Secret", f"mlops-{stack}-api", contract.MLFLOW_CREDENTIALS_SECRET)
    env = {e["name"]: e.get("value") for e in api_container(run, stack)["env"]}
    airflow_url = reveal(run.exports["airflowInternalUrl"].value)
    assert (
        env[contract.API_AIRFLOW_URL.name]
        == airflow_url
        == f"http://airflow-api-server.mlops-{stack}-airflow.svc.cluster.local:8080"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_tls_and_network_policy_follow_the_database_mode(stack: str, stack_run: Any) -> None:
    run, s = stack_run(stack), settings(stack)
    env = {e["name"]: e.get("value") for e in api_container(run, stack)["env"]}
    policies = k8s(run, "NetworkPolicy", f"mlops-{stack}-api")  # the stack's (infra/network.py)
    egress = [rule for policy in policies for rule in policy.manifest["spec"].get("egress") or []]
    (peers,) = [rule["to"] for rule in egress if rule["ports"][0]["port"] == 5432]
    if stack == "prod":
        assert s.database.mode == "rds" and env[contract.API_DATABASE_SSLMODE.name] == "require"
        assert [p["ipBlock"]["cidr"] for p in peers] == list(s.database_egress_cidrs)
    else:
        assert s.database.mode == "in-cluster" and env[contract.API_DATABASE_SSLMODE.name] == "disable"
        assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers] == [
            "mlops-dev-data"
        ]


@pytest.mark.parametrize("stack", STACKS)
def test_api_waits_for_the_bootstrap_and_airflow(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    by_urn = run.by_urn()
    (deployment,) = k8s(run, "Deployment", f"mlops-{stack}-api", "platform-api")
    (job,) = k8s(run, "Job", f"mlops-{stack}-airflow", AIRFLOW_USER_JOB)
    for waiting in (deployment, job):
        before = {(by_urn[u].type, by_urn[u].name) for u in waiting.dependencies if u in by_urn}
        assert ("kubernetes:helm.sh/v3:Release", "airflow-release") in before  # Airflow's migrated database
        assert ("kubernetes:batch/v1:Job", "database-bootstrap") in before  # the API's role and database
        assert ("kubernetes:core/v1:ConfigMap", "endpoints-api-configmap") in before


@pytest.mark.parametrize("stack", STACKS)
def test_airflow_creates_dags_unpaused(stack: str, stack_run: Any) -> None:
    (release,) = [r for r in stack_run(stack).helm_releases() if reveal(r.inputs).get("chart") == "airflow"]
    core = reveal(release.inputs)["values"]["config"]["core"]
    assert core["dags_are_paused_at_creation"] == "False"


@pytest.mark.parametrize("stack", STACKS)
def test_exports_name_the_api_and_hold_its_token_only_as_a_secret(stack: str, stack_run: Any) -> None:
    run, s = stack_run(stack), settings(stack)
    values = run.export_values()
    assert values["apiUrl"] == f"http://platform-api.mlops-{stack}-api.svc.cluster.local:{contract.API_PORT}"
    assert values["apiExternalUrl"] == f"https://{s.host('api')}"
    assert not run.exports["apiUrl"].secret and not run.exports["apiExternalUrl"].secret
    token = run.exports["apiAdminToken"]
    assert token.secret
    (secret,) = k8s(run, "Secret", f"mlops-{stack}-api", ADMIN_TOKEN_SECRET)
    assert reveal(token.value) == reveal(secret.inputs["stringData"])[contract.API_ADMIN_TOKEN.name]


# --- the bootstrap and the API's migrations, for real (local PostgreSQL) ------------------------------------------
@pytest.fixture
def renamed_apps(postgres_available: Any) -> Iterator[tuple[dict[str, list[AppDatabase]], str]]:
    """Each stack's app databases under names unique to this test (the shared server keeps the real ones free), and
    an RDS-like master role; dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    apps = {
        stack: [
            dataclasses.replace(a, database=f"{a.database}_{stack}_t{suffix}", role=f"{a.role}_{stack}_t{suffix}")
            for a in stack_apps(settings(stack)).values()
        ]
        for stack in STACKS
    }
    master = f"rds_master_t{suffix}"
    yield apps, master
    every = {(a.database, a.role) for stack_apps in apps.values() for a in stack_apps}
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        for database, _ in every:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        for _, role in every:
            for slot in (0, 1):
                conn.execute(f"DROP ROLE IF EXISTS {login_role(role, slot)}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"DROP ROLE IF EXISTS {master}")


async def _migrate_as(role: str, database: str, owner: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(
        host="127.0.0.1", user=role, dbname=database, autocommit=True, row_factory=dict_row
    ) as conn:
        applied = await api_db.migrate(conn)
        cur = await conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'api_schema_migrations'")
        assert await cur.fetchone() == {"tableowner": owner}  # the owner role, whichever login role migrates
        return applied


@pytest.mark.servers
def test_bootstrap_gives_the_api_its_own_database_where_its_migrations_run(
    renamed_apps: tuple[dict[str, list[AppDatabase]], str], tmp_path: Path
) -> None:
    apps, master = renamed_apps
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {master} LOGIN CREATEROLE CREATEDB")  # like the RDS master: no superuser
    for stack in STACKS:
        stack_apps = apps[stack]
        passwords = {login_role(a.role, k): "pw-" + uuid.uuid4().hex for a in stack_apps for k in (0, 1)}
        _run_sql(bootstrap_sql(stack_apps, rotation_plan(ROTATION_EPOCH, 30)), master, passwords, tmp_path)
        (api,) = [a for a in stack_apps if a.role.startswith("platform_api_")]
        every = [name for _, name, _ in api_db.migrations()]
        api_a, api_b = login_role(api.role, 0), login_role(api.role, 1)
        assert asyncio.run(_migrate_as(api_a, api.database, api.role)) == every and every
        assert asyncio.run(_migrate_as(api_b, api.database, api.role)) == []  # applied once, seen by either role
        others = [a for a in stack_apps if a is not api]
        assert others and not any(_can_connect(api_a, o.database) for o in others)
        assert not any(_can_connect(login_role(o.role, 0), api.database) for o in others)


# --- the image's dependency group ---------------------------------------------------------------------------------
def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(lock: dict[str, Any], roots: list[dict[str, Any]]) -> set[str]:
    """Every package the lock installs for `roots` (names with extras), markers ignored (a superset)."""
    packages = {_normal(p["name"]): p for p in lock["package"]}
    seen: set[tuple[str, str | None]] = set()
    todo = [(_normal(d["name"]), extra) for d in roots for extra in (None, *d.get("extra", []))]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        package = packages[name]
        deps = package.get("dependencies", []) if extra is None else package["optional-dependencies"][extra]
        todo += [(_normal(d["name"]), e) for d in deps for e in (None, *d.get("extra", []))]
    return {name for name, _ in seen}


def _startup_imports() -> set[str]:
    """Top-level names of the third-party modules imported at module level by the API's code and the first-party
    modules it imports (services.*, mlops_tasks.*), followed from services/api."""
    first_party = ("services", "mlops_tasks")
    files = {p for p in (ROOT / "services" / "api").rglob("*.py")}
    seen: set[Path] = set()
    third: set[str] = set()
    while files - seen:
        path = sorted(files - seen)[0]
        seen.add(path)
        for node in ast.parse(path.read_text()).body:
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top in first_party:
                    base = ROOT / "dags" if top == "mlops_tasks" else ROOT
                    module = base / Path(*name.split("."))
                    files |= {f for f in (module.with_suffix(".py"), module / "__init__.py") if f.exists()}
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third.add(top)
    return third


def test_the_api_group_is_locked_and_holds_what_the_api_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert "api" in project["tool"]["uv"]["default-groups"]  # `uv sync`, as `pulumi up` runs it, installs it too
    assert "uv sync --frozen --no-default-groups --group api" in (ROOT / "services/api/Dockerfile").read_text()
    (me,) = [p for p in lock["package"] if p["name"] == project["project"]["name"]]
    locked = {(_normal(d["name"]), d.get("specifier", "")) for d in me["metadata"]["requires-dev"]["api"]}
    declared = set()
    for spec in project["dependency-groups"]["api"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]+\])?(.*)", spec)
        assert m is not None, spec
        declared.add((_normal(m.group(1)), m.group(2)))
    assert locked == declared, "uv.lock is not current for the api group: run `uv lock`"
    installed = _closure(lock, me["dev-dependencies"]["api"])
    distributions = importlib.metadata.packages_distributions()
    imports = _startup_imports()
    assert {"fastapi", "psycopg", "httpx", "pydantic", "uvicorn"} <= imports
    provided_by = {top: {_normal(d) for d in distributions.get(top, [top])} for top in imports}
    missing = {top: sorted(dists) for top, dists in provided_by.items() if not dists & installed}
    assert not missing, f"imported by the API but not installed by the api group: {missing}"
