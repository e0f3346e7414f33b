"""The platform's services in both stacks, run as the whole program under mocks."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from harness import checks
from harness.mocks import SecretValue, reveal
from harness.run import ROOT, ProgramRun, run_program
from services.common import contract
from stacks.settings import THIRD_PARTY_IMAGES

STACKS = ["dev", "prod"]
EXPECTED_EXPORTS = {
    "mlflowUrl",
    "mlflowExternalUrl",
    "airflowUrl",
    "models",
    "artifactBucket",
    "mlflowArtifactPrefix",
    "airflowLogPrefix",
    "databaseHost",
    "namespaces",
    "caCertificate",
    "apiUrl",
    "apiExternalUrl",
    "apiAdminToken",
}
# The credentials a person or CI needs from the stack: exported, as secrets only.
SECRET_EXPORTS = {"apiAdminToken", "modelApiKeys"}


def release(run: ProgramRun, chart: str) -> dict[str, Any]:
    found = [reveal(r.inputs) for r in run.helm_releases() if reveal(r.inputs).get("chart") == chart]
    assert len(found) == 1, f"{len(found)} releases of {chart}"
    return found[0]


def objects(run: ProgramRun, kind: str) -> list[dict[str, Any]]:
    return [r.manifest for r in run.kubernetes_objects() if r.manifest.get("kind") == kind]


@pytest.mark.parametrize("stack", STACKS)
def test_releases_are_pinned_and_validate_against_their_charts(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    charts = {reveal(r.inputs)["chart"]: reveal(r.inputs)["version"] for r in run.helm_releases()}
    assert charts == {
        "cert-manager": "v1.21.1",
        "traefik": "41.3.0",
        "mlflow": "1.11.5",
        "airflow": "1.21.0",
        "kube-prometheus-stack": "88.5.3",
        "loki": "18.11.0",
        "alloy": "1.11.1",
    }
    assert checks.helm_values_problems(run) == []
    assert not any("ingress-nginx" in str(reveal(r.inputs)) for r in run.helm_releases())


@pytest.mark.parametrize("stack", STACKS)
def test_every_named_reference_exists_and_no_secret_is_in_plaintext(stack: str, stack_run: Any) -> None:
    """The platform services' guarantees in one place (tests.harness.test_run_program.py runs every check too): Secrets,
    ConfigMaps, claims and service accounts named in pod specs and Helm values exist in that namespace;
    no secret value in plaintext in Helm values, ConfigMaps, component outputs or exports."""
    run = stack_run(stack)
    assert checks.reference_problems(run) == []
    assert checks.plaintext_secret_problems(run) == []
    named = {(ns, name) for kind, ns, name in checks.inventory(run) if kind == "Secret"}
    for secret in ("mlflow-db", "mlflow-s3-credentials", "mlflow-admin", "mlflow-auth-db", "mlflow-client-user"):
        assert (f"mlops-{stack}-mlflow", secret) in named, secret
    for secret in (
        "airflow-metadata",
        "airflow-s3-logs",
        "airflow-fernet-key",
        "airflow-api-secret-key",
        "airflow-jwt-secret",
    ):
        assert (f"mlops-{stack}-airflow", secret) in named, secret


def _walk_keys(value: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            keys.add(k)
            keys |= _walk_keys(v)
    elif isinstance(value, list):
        for v in value:
            keys |= _walk_keys(v)
    return keys


@pytest.mark.parametrize("stack", STACKS)
def test_airflow_values_use_only_the_official_charts_keys(stack: str, stack_run: Any) -> None:
    values = release(stack_run(stack), "airflow")["values"]
    assert not {k for k in _walk_keys(values) if k.startswith("external")}, (
        "externalDatabase-style keys are not the official chart's"
    )
    chart, problem = checks.release_chart(
        next(r for r in stack_run(stack).helm_releases() if reveal(r.inputs)["chart"] == "airflow")
    )
    assert chart is not None, problem
    assert set(values) <= set(chart.default_values)
    assert values["postgresql"] == {"enabled": False}
    assert values["data"] == {"metadataSecretName": "airflow-metadata"}
    assert values["executor"] == "KubernetesExecutor"
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert isinstance(values[key], str) and values[key]
    assert values["createUserJob"] == {"enabled": False}
    # the DAGs import services.common from the repository root that git-sync checks out
    assert {"name": "PYTHONPATH", "value": "/opt/airflow/dags/repo"} in values["env"]
    git = values["dags"]["gitSync"]
    assert (
        git["enabled"]
        and git["repo"].endswith("mlops-platform.git")
        and git["branch"] == "main"
        and git["subPath"] == "dags"
    )
    assert values["config"]["logging"]["remote_logging"] == "True"
    assert values["config"]["logging"]["remote_base_log_folder"].endswith("/airflow-logs")


def test_executor_and_git_ssh_key_follow_the_settings() -> None:
    run = run_program("dev", overrides={"airflow.executor": "CeleryExecutor"})
    values = release(run, "airflow")["values"]
    assert values["executor"] == "CeleryExecutor" and values["redis"] == {"enabled": True}
    assert checks.helm_values_problems(run) == []


def test_git_ssh_key_secret_is_created_and_referenced(tmp_path: Any) -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text() + "  mlops-platform:airflow.gitSshKey:\n    secure: v1:AAAA:BBBB\n"
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    run = run_program("prod", path)
    values = release(run, "airflow")["values"]
    assert values["dags"]["gitSync"]["sshKeySecret"] == "airflow-git-ssh-key"
    assert checks.reference_problems(run) == []
    assert checks.plaintext_secret_problems(run) == []
    (secret,) = [s for s in objects(run, "Secret") if s["metadata"]["name"] == "airflow-git-ssh-key"]
    assert "gitSshKey" in secret["stringData"]


@pytest.mark.parametrize("stack", STACKS)
def test_mlflow_values(stack: str, stack_run: Any) -> None:
    values = release(stack_run(stack), "mlflow")["values"]
    assert values["backendStore"]["postgres"]["enabled"] is True
    assert values["backendStore"]["existingDatabaseSecret"]["name"] == "mlflow-db"
    assert values["artifactRoot"]["proxiedArtifactStorage"] is True
    assert values["artifactRoot"]["defaultArtifactsDestination"].startswith("s3://")
    assert values["artifactRoot"]["s3"]["existingSecret"]["name"] == "mlflow-s3-credentials"
    assert values["extraEnvVars"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert values["resources"]["requests"] and values["resources"]["limits"]["memory"]
    assert values["podAnnotations"]["mlops-platform/s3-key"]
    assert values["auth"]["enabled"] is True  # MLflow asks for a password in dev as in prod
    assert values["auth"]["existingAdminSecret"]["name"] == "mlflow-admin"
    for key in ("awsAccessKeyId", "awsSecretAccessKey"):
        assert not values["artifactRoot"]["s3"].get(key), "credentials must come from the Secret"


@pytest.mark.parametrize("stack", STACKS)
def test_every_ingress_has_tls_and_the_issuer_annotation(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    issuer = reveal(run.exports["clusterIssuer"].value)
    assert issuer == (f"mlops-{stack}-ca" if stack == "dev" else f"mlops-{stack}-acme")
    ingresses = objects(run, "Ingress")
    assert ingresses, "no Ingress objects"
    for ing in ingresses:
        hosts = {h for rule in ing["spec"]["rules"] for h in [rule["host"]]}
        tls_hosts = {h for t in ing["spec"]["tls"] for h in t["hosts"]}
        assert hosts <= tls_hosts, ing["metadata"]["name"]
        assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == issuer
    mlflow = release(run, "mlflow")["values"]["ingress"]
    assert mlflow["enabled"] and mlflow["annotations"]["cert-manager.io/cluster-issuer"] == issuer
    assert {h["host"] for h in mlflow["hosts"]} <= {h for t in mlflow["tls"] for h in t["hosts"]}
    api = release(run, "airflow")["values"]["ingress"]["apiServer"]
    assert api["enabled"] and api["annotations"]["cert-manager.io/cluster-issuer"] == issuer
    assert all(h["tls"]["enabled"] and h["tls"]["secretName"] for h in api["hosts"])


@pytest.mark.parametrize("stack", STACKS)
def test_http_redirects_to_https_and_each_stack_has_its_own_class(stack: str, stack_run: Any) -> None:
    values = release(stack_run(stack), "traefik")["values"]
    assert values["ports"]["web"]["http"]["redirections"]["entryPoint"] == {
        "to": "websecure",
        "scheme": "https",
        "permanent": True,
    }
    assert values["ingressClass"] == {"enabled": True, "isDefaultClass": False, "name": f"mlops-{stack}-traefik"}
    assert values["providers"]["kubernetesIngress"]["ingressClass"] == f"mlops-{stack}-traefik"


@pytest.mark.parametrize("stack", STACKS)
def test_internal_ca_chain_and_cert_manager_crds(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    assert release(run, "cert-manager")["values"]["crds"] == {"enabled": True, "keep": True}
    issuers = {o["metadata"]["name"]: o["spec"] for o in objects(run, "ClusterIssuer")}
    assert issuers[f"mlops-{stack}-selfsigned"] == {"selfSigned": {}}
    assert issuers[f"mlops-{stack}-ca"] == {"ca": {"secretName": f"mlops-{stack}-root-ca"}}
    (ca,) = objects(run, "Certificate")
    assert ca["spec"]["isCA"] is True and ca["spec"]["issuerRef"]["name"] == f"mlops-{stack}-selfsigned"
    if stack == "prod":
        acme = issuers["mlops-prod-acme"]["acme"]
        assert acme["email"] == "platform-team@example.com"
        assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "mlops-prod-traefik"}}}]
    export = run.exports["caCertificate"]
    assert not export.secret and export.value.startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize("stack", STACKS)
def test_exports_contain_every_endpoint(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    assert set(run.exports) >= EXPECTED_EXPORTS
    values = run.export_values()
    domain = "dev.mlops.internal" if stack == "dev" else "mlops.example.com"
    assert values["mlflowUrl"] == f"http://mlflow.mlops-{stack}-mlflow.svc.cluster.local:80"
    assert values["mlflowExternalUrl"] == f"https://mlflow.{domain}"
    assert values["airflowUrl"] == f"https://airflow.{domain}"
    assert set(values["models"]) == {"iris-classifier", "diabetes-regression"}
    for model, slug in (("iris-classifier", "iris_classifier"), ("diabetes-regression", "diabetes_regression")):
        assert values["models"][model] == {
            "url": f"https://{model}.models.{domain}",
            "internalUrl": f"http://model-{model}.mlops-{stack}-serving.svc.cluster.local:8000",
            "grpcTarget": f"{model}.models.{domain}:443",
            "internalGrpcTarget": f"model-{model}.mlops-{stack}-serving.svc.cluster.local:8081",
            "dag": f"train_{slug}",
            "rollbackDag": f"rollback_{slug}",
            "namespace": f"mlops-{stack}-serving",
            "deployment": f"model-{model}",
        }
    assert not {"servingUrl", "servingExternalUrl", "servingReloadUrl"} & set(values), "one serving per model now"
    assert values["mlflowArtifactPrefix"].startswith("mlflow") and values["airflowLogPrefix"].startswith("airflow-logs")
    assert values["databaseHost"]
    assert set(values["namespaces"]) >= {"mlflow", "airflow", "serving", "data"}
    secret = {name for name, e in run.exports.items() if e.secret}
    assert secret == SECRET_EXPORTS, "exports are endpoints, the credentials among them secrets"


@pytest.mark.parametrize("stack", STACKS)
def test_the_models_generated_api_keys_are_one_secret_export(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    export = run.exports["modelApiKeys"]
    assert export.secret
    keys = reveal(export.value)
    if stack == "prod":  # apiKey by default: one generated key per model, the one the Secret holds the hash of
        assert {m: sorted(k) for m, k in keys.items()} == {
            m: ["key-1"] for m in ("iris-classifier", "diabetes-regression")
        }
    else:  # dev: anonymous calls by default
        assert keys == {}


@pytest.mark.parametrize("stack", STACKS)
def test_configmap_keys_equal_the_contract_in_every_consumer_namespace(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    maps = [o for o in objects(run, "ConfigMap") if o["metadata"]["name"] == contract.ENDPOINTS_CONFIGMAP]
    assert {m["metadata"]["namespace"] for m in maps} == {
        f"mlops-{stack}-airflow",
        f"mlops-{stack}-serving",
        f"mlops-{stack}-api",
    }
    for m in maps:
        assert set(m["data"]) == {v.name for v in contract.CONFIGMAP_VARS}
        assert all(isinstance(v, str) and v for v in m["data"].values())
    values = run.export_values()
    data = maps[0]["data"]
    assert data[contract.MLFLOW_TRACKING_URI.name] == values["mlflowUrl"]
    assert data[contract.ARTIFACT_BUCKET.name] == values["artifactBucket"]
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects(run, "Secret")}
    for ns in (f"mlops-{stack}-airflow", f"mlops-{stack}-serving", f"mlops-{stack}-api"):
        assert set(secrets[(ns, contract.RELOAD_TOKEN_SECRET)]["stringData"]) == {contract.RELOAD_TOKEN.name}
        assert set(secrets[(ns, contract.SLACK_SECRET)]["stringData"]) == {contract.SLACK_WEBHOOK_URL.name}


@pytest.mark.parametrize("stack", STACKS)
def test_airflow_workers_get_the_contract_environment(stack: str, stack_run: Any) -> None:
    import yaml

    values = release(stack_run(stack), "airflow")["values"]
    env_from = yaml.safe_load(values["extraEnvFrom"])
    assert env_from == [{"configMapRef": {"name": contract.ENDPOINTS_CONFIGMAP}}]  # no Secret as environment
    # the reload token and the webhook as files of their mounted Secrets, `<NAME>_FILE` naming them
    env = {e["name"]: e["value"] for e in values["env"]}
    mounts = {m["name"]: m["mountPath"] for m in values["volumeMounts"]}
    secrets = {v["secret"]["secretName"]: v["name"] for v in values["volumes"] if "secret" in v}
    for var, secret in (
        (contract.RELOAD_TOKEN, contract.RELOAD_TOKEN_SECRET),
        (contract.SLACK_WEBHOOK_URL, contract.SLACK_SECRET),
    ):
        assert env[var.file_variable] == f"{mounts[secrets[secret]]}/{var.name}"
    # the S3 key as boto's shared credentials file
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == f"{mounts[secrets['airflow-s3-logs']]}/credentials"
    assert values["airflowPodAnnotations"]["mlops-platform/s3-key"]
    conn = values["secret"][0]
    assert conn["envName"] == conn["secretKey"] == "AIRFLOW_CONN_MLOPS_S3_LOGS"


def test_slack_webhook_reaches_only_secrets(tmp_path: Any) -> None:
    text = (
        ROOT / "Pulumi.prod.yaml"
    ).read_text() + "  mlops-platform:alerts.slackWebhookUrl:\n    secure: v1:AAAA:BBBB\n"
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    run = run_program("prod", path)
    assert checks.plaintext_secret_problems(run) == []
    slack = [o for o in objects(run, "Secret") if o["metadata"]["name"] == contract.SLACK_SECRET]
    assert len(slack) == 3  # Airflow, serving, the API
    raw = [
        r for r in run.of_type("kubernetes:core/v1:Secret") if r.manifest["metadata"]["name"] == contract.SLACK_SECRET
    ]
    for reg in raw:
        value = reg.inputs["stringData"]
        inner = value.value if isinstance(value, SecretValue) else value[contract.SLACK_WEBHOOK_URL.name]
        assert isinstance(value, SecretValue) or isinstance(inner, SecretValue)
    assert "harness-secret-value-for-mlops-platform:alerts.slackWebhookUrl" in str(reveal(raw[0].inputs))


@pytest.mark.parametrize("stack", STACKS)
def test_namespaces_have_pod_security_levels(stack: str, stack_run: Any) -> None:
    levels = {
        o["metadata"]["name"]: o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for o in objects(stack_run(stack), "Namespace")
    }
    p = f"mlops-{stack}"
    assert levels[f"{p}-serving"] == levels[f"{p}-data"] == levels[f"{p}-ingress"] == "restricted"
    assert levels[f"{p}-mlflow"] in ("restricted", "baseline") and levels[f"{p}-airflow"] in ("restricted", "baseline")
    assert levels["cert-manager"] == "restricted"


def test_existing_controller_installs_no_traefik() -> None:
    run = run_program(
        "dev",
        overrides={
            "ingress.controller": "existing",
            "ingress.className": "nginx-internal",
            "ingress.controllerNamespace": "ingress-system",
        },
    )
    assert "traefik" not in {reveal(r.inputs)["chart"] for r in run.helm_releases()}
    assert all(i["spec"]["ingressClassName"] == "nginx-internal" for i in objects(run, "Ingress"))
    assert checks.reference_problems(run) == []
    # no Traefik CRD objects for a controller that may not read them: gRPC is then reachable inside the cluster only
    assert not objects(run, "IngressRoute") and not objects(run, "Middleware")
    for model in run.export_values()["models"].values():
        assert "grpcTarget" not in model and model["internalGrpcTarget"].endswith(".svc.cluster.local:8081")


def test_second_stack_on_a_shared_cluster_does_not_collide() -> None:
    def names(run: ProgramRun) -> set[tuple[str, str, str]]:
        return {
            (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for o in (r.manifest for r in run.kubernetes_objects())
        }

    dev = run_program("dev")
    prod = run_program("prod", overrides={"ingress.installCertManager": "false"})
    assert names(dev) & names(prod) == set()
    assert "cert-manager" not in {reveal(r.inputs)["chart"] for r in prod.helm_releases()}


def test_no_contract_variable_is_spelled_outside_the_contract() -> None:
    """Code reads and writes these variables through services.common.contract: a name written as a
    string literal ("NAME", 'NAME', NAME=) or a shell variable ($NAME) elsewhere is a second definition."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    scanned = [
        f
        for f in files
        if not f.startswith(("tests/", "docs/"))
        and f not in ("services/common/contract.py", "README.md")
        and re.search(r"(\.py|\.ya?ml|Dockerfile|Makefile|\.sh|/run)$", f)
    ]
    offenders = []
    for name in (v.name for v in contract.ALL_VARS):
        literal = re.compile(rf"[\"']{name}[\"']")
        shell = re.compile(rf"(\${{?{name}\b|^\s*(ENV\s+)?{name}=)", re.M)
        for f in scanned:
            path = ROOT / f
            if not path.exists():
                continue
            text = path.read_text(errors="ignore")
            if literal.search(text) or (not f.endswith(".py") and shell.search(text)):
                offenders.append(f"{f}: {name}")
    assert offenders == [], "use services.common.contract instead of spelling these names"


@pytest.mark.parametrize("stack", STACKS)
def test_airflow_waits_for_the_database_bootstrap(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    airflow = next(r for r in run.registrations if r.type == "mlops:platform:AirflowPlatform")
    database = next(r for r in run.registrations if r.type == "mlops:platform:Database")
    release = next(r for r in run.helm_releases() if reveal(r.inputs)["chart"] == "airflow")
    bootstrap = next(r for r in run.registrations if r.type == "kubernetes:batch/v1:Job" and r.parent == database.urn)
    assert bootstrap.urn in airflow.dependencies
    # children do not inherit a component's depends_on: the release itself must wait
    assert bootstrap.urn in release.dependencies


@pytest.mark.parametrize("stack", STACKS)
def test_workloads_wait_for_their_configuration(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    configmaps = {
        r.urn
        for r in run.of_type("kubernetes:core/v1:ConfigMap")
        if r.manifest["metadata"]["name"] == contract.ENDPOINTS_CONFIGMAP
    }
    deployments = [
        r for r in run.of_type("kubernetes:apps/v1:Deployment") if r.manifest["metadata"]["name"].startswith("model-")
    ]
    assert len(deployments) == 2
    for deployment in deployments:
        assert configmaps & set(deployment.dependencies), deployment.name
    mlflow = next(r for r in run.helm_releases() if reveal(r.inputs)["chart"] == "mlflow")
    issuers = {r.urn for r in run.registrations if r.type == "kubernetes:cert-manager.io/v1:ClusterIssuer"}
    assert issuers & set(mlflow.dependencies)


# --- MLflow basic auth (prod): a shared auth database, and an ordinary user for the DAGs and serving --
@pytest.mark.parametrize("stack", STACKS)
def test_mlflow_basic_auth_keeps_users_in_postgres_not_in_a_sqlite_file_per_pod(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    values = release(run, "mlflow")["values"]
    assert values["replicaCount"] == (2 if stack == "prod" else 1)
    postgres = values["auth"]["postgres"]
    assert postgres["enabled"] is True and postgres["database"] == "mlflow_auth" and postgres["driver"] == "psycopg2"
    assert postgres["existingSecret"] == {
        "name": "mlflow-auth-db",
        "usernameKey": "username",
        "passwordKey": "password",
    }
    assert postgres["host"] == values["backendStore"]["postgres"]["host"]
    # the data layer creates the role and database, and the Secret in MLflow's namespace
    sql = next(o for o in objects(run, "ConfigMap") if o["metadata"]["name"] == "db-bootstrap-sql")["data"][
        "bootstrap.sql"
    ]
    assert "CREATE DATABASE mlflow_auth OWNER mlflow_auth" in sql
    assert ("Secret", f"mlops-{stack}-mlflow", "mlflow-auth-db") in checks.inventory(run)


def test_basic_auth_switched_off_has_no_auth_database() -> None:
    off = run_program("dev", overrides={"mlflow.basicAuth": "false"})
    assert release(off, "mlflow")["values"]["auth"] == {"enabled": False}
    sql = next(o for o in objects(off, "ConfigMap") if o["metadata"]["name"] == "db-bootstrap-sql")["data"][
        "bootstrap.sql"
    ]
    assert "mlflow_auth" not in sql


def test_basic_auth_without_its_database_is_refused() -> None:
    from components.mlflow import MlflowServerArgs
    from components.namespaces import NamespaceRef
    from harness.run import read_stack_file
    from stacks.settings import load_settings

    cfg = read_stack_file("prod")
    settings = load_settings("prod", cfg.config, set(cfg.secret_keys))
    common: dict[str, Any] = dict(
        namespace=NamespaceRef("ns"),
        settings=settings.mlflow,
        host="mlflow.example.com",
        ingress_class="c",
        cluster_issuer="i",
        region="eu-west-1",
        bucket="b",
        artifact_prefix="mlflow/",
        s3_secret="s3",
        db_secret="db",
        db_host="h",
        db_port=5432,
        db_name="mlflow",
        rotation_annotation="r",
    )
    assert settings.mlflow.basic_auth
    with pytest.raises(ValueError, match="basic auth needs its Postgres database"):
        MlflowServerArgs(**common)
    MlflowServerArgs(**common, auth_db_secret="mlflow-auth-db", auth_db_name="mlflow_auth")


@pytest.mark.parametrize("stack", STACKS)
def test_consumers_get_the_mlflow_client_credentials(stack: str, stack_run: Any) -> None:

    run = stack_run(stack)
    creds = [
        r
        for r in run.of_type("kubernetes:core/v1:Secret")
        if r.manifest["metadata"]["name"] == contract.MLFLOW_CREDENTIALS_SECRET
    ]
    assert {r.manifest["metadata"]["namespace"] for r in creds} == {
        f"mlops-{stack}-airflow",
        f"mlops-{stack}-serving",
        f"mlops-{stack}-api",
    }
    expected = {v.name for v in contract.MLFLOW_CLIENT_VARS} | {contract.MLFLOW_CREDENTIALS_KEY}  # basic auth: both
    for reg in creds:
        data = reveal(reg.inputs).get("stringData") or {}
        assert set(data) == expected
        assert data[contract.MLFLOW_TRACKING_USERNAME.name] == "mlops-pipelines"
        assert len(data[contract.MLFLOW_TRACKING_PASSWORD.name]) == 32
        assert data[contract.MLFLOW_CREDENTIALS_KEY] == contract.mlflow_credentials_ini(
            "mlops-pipelines", data[contract.MLFLOW_TRACKING_PASSWORD.name]
        )
    # Airflow's containers, the serving pods and the API mount MLflow's own credentials file under $HOME/.mlflow
    values = release(run, "airflow")["values"]
    (volume,) = [
        v for v in values["volumes"] if v.get("secret", {}).get("secretName") == contract.MLFLOW_CREDENTIALS_SECRET
    ]
    assert {"name": volume["name"], "mountPath": "/home/airflow/.mlflow", "readOnly": True} in values["volumeMounts"]
    for deployment in (
        o for o in objects(run, "Deployment") if o["metadata"]["name"].startswith(("model-", "platform-api"))
    ):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        home = next(e["value"] for e in container["env"] if e["name"] == "HOME")
        (volume,) = [
            v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == contract.MLFLOW_CREDENTIALS_SECRET
        ]
        assert volume["secret"]["items"] == [{"key": "credentials", "path": "credentials"}]
        assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[volume["name"]] == f"{home}/.mlflow"
        assert "envFrom" not in container or all("secretRef" not in e for e in container["envFrom"])


@pytest.mark.parametrize("stack", STACKS)
def test_the_client_user_job_runs_after_mlflow_and_gates_the_credentials(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    (job,) = [
        r for r in run.of_type("kubernetes:batch/v1:Job") if r.manifest["metadata"]["name"] == "mlflow-client-user"
    ]
    assert job.manifest["metadata"]["namespace"] == f"mlops-{stack}-mlflow"
    mlflow_release = next(r for r in run.helm_releases() if reveal(r.inputs)["chart"] == "mlflow")
    assert mlflow_release.urn in job.dependencies
    pod = job.manifest["spec"]["template"]
    assert pod["metadata"]["annotations"]["mlops-platform/client-user-inputs"]
    (container,) = pod["spec"]["containers"]
    pinned = stack == "prod"  # by digest in prod, by tag in dev (images.thirdParty)
    assert container["image"] == (THIRD_PARTY_IMAGES["mlflow"] if pinned else "burakince/mlflow:3.15.1")
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_URL"]["value"] == run.export_values()["mlflowUrl"]
    # the credentials are files of the mounted Secrets, `<NAME>_FILE` names them (none in env)
    assert env["ADMIN_PASSWORD_FILE"]["value"] == "/var/run/secrets/mlops/mlflow-admin/password"
    assert env["CLIENT_PASSWORD_FILE"]["value"] == "/var/run/secrets/mlops/mlflow-client-user/password"
    assert not any("valueFrom" in e for e in env.values()) and "ADMIN_PASSWORD" not in env
    volumes = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[next(n for n, s in volumes.items() if s == "mlflow-admin")] == "/var/run/secrets/mlops/mlflow-admin"
    script = next(o for o in objects(run, "ConfigMap") if o["metadata"]["name"] == "mlflow-client-user-script")
    assert "def ensure_user" in script["data"]["ensure_user.py"]
    # the consumers' Secrets are written only once the user exists
    for reg in run.of_type("kubernetes:core/v1:Secret"):
        if reg.manifest["metadata"]["name"] == contract.MLFLOW_CREDENTIALS_SECRET:
            assert job.urn in reg.dependencies, reg.name


def test_the_job_image_follows_the_pinned_charts_app_version() -> None:
    import yaml

    from components.mlflow import CHART_APP_VERSIONS

    for version, app_version in CHART_APP_VERSIONS.items():
        chart = yaml.safe_load((checks.charts_dir() / "mlflow" / version / "Chart.yaml").read_text())
        assert chart["appVersion"] == app_version


# --- Airflow 3 workers, Pod Security ---------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_airflow_task_pods_call_the_execution_api_inside_the_cluster(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    config = release(run, "airflow")["values"]["config"]
    assert config["api"]["base_url"].startswith("https://")  # UI links: the public host
    internal = reveal(run.exports["airflowInternalUrl"].value)
    assert internal == f"http://airflow-api-server.mlops-{stack}-airflow.svc.cluster.local:8080"
    assert config["core"]["execution_api_server_url"] == f"{internal}/execution/"


def _restricted_container_problems(ctx: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    problems = []
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation")
    if "ALL" not in (ctx.get("capabilities") or {}).get("drop", []):
        problems.append("capabilities.drop ALL")
    if ctx.get("privileged"):
        problems.append("privileged")
    if not (ctx.get("runAsNonRoot") or pod.get("runAsNonRoot")):
        problems.append("runAsNonRoot")
    if ((ctx.get("seccompProfile") or pod.get("seccompProfile")) or {}).get("type") not in (
        "RuntimeDefault",
        "Localhost",
    ):
        problems.append("seccompProfile")
    return problems


@pytest.mark.parametrize("stack", STACKS)
def test_mlflow_runs_under_pod_security_restricted(stack: str, stack_run: Any) -> None:
    """Every container of the MLflow chart (server, migration and auth init containers) takes
    `securityContext`, the pod takes `podSecurityContext` (chart 1.11.5 templates/deployment.yaml):
    with the chart's defaults coalesced, both satisfy `restricted`, so the namespace enforces it."""
    run = stack_run(stack)
    reg = next(r for r in run.helm_releases() if reveal(r.inputs)["chart"] == "mlflow")
    chart, _ = checks.release_chart(reg)
    assert chart is not None
    merged = checks.helm_merge(chart.default_values, reveal(reg.inputs)["values"])
    assert _restricted_container_problems(merged["securityContext"], merged["podSecurityContext"]) == []
    levels = {
        o["metadata"]["name"]: o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for o in objects(run, "Namespace")
    }
    assert levels[f"mlops-{stack}-mlflow"] == "restricted"
    job_pods = [
        o["spec"]["template"]["spec"]
        for o in objects(run, "Job")
        if o["metadata"]["namespace"] == f"mlops-{stack}-mlflow"
    ]
    for pod in job_pods:
        for c in pod["containers"]:
            assert _restricted_container_problems(c["securityContext"], pod["securityContext"]) == []


@pytest.mark.parametrize("stack", STACKS)
def test_airflow_sidecars_get_restricted_security_contexts(stack: str, stack_run: Any) -> None:
    values = release(stack_run(stack), "airflow")["values"]
    pod = values["securityContexts"]["pod"]
    assert _restricted_container_problems(values["securityContexts"]["containers"], pod) == []
    git_sync = values["dags"]["gitSync"]["securityContexts"]["container"]
    assert git_sync["runAsUser"] == 65533 and _restricted_container_problems(git_sync, pod) == []
    statsd = values["statsd"]["securityContexts"]
    assert _restricted_container_problems(statsd["container"], statsd["pod"]) == []
