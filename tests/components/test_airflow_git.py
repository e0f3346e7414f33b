"""The training sources' git credentials in the program (components/airflow.py), both stacks, with a model fetched
over SSH with its own deploy key, one over https with a token, and git-sync's key set (all `secure:` values):

- each named set becomes a Secret `git-credentials-<name>` in the Airflow namespace (where the task pods run) whose
  keys are the files the training pod sees, every value a secret (an SSH key ending with its newline); the pinned
  host keys become the ConfigMap `git-known-hosts` and git-sync's `knownHosts`;
- every object a training pod refers to is one the program creates there, and the harness's checks stay green
  (references, no plaintext secret, schemas);
- the task pods run as a non-root user whose group is the pods' fsGroup, the group the 0440 files belong to;
- the Airflow namespace may open SSH connections (port 22) only when a repository it fetches is SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components import airflow
from harness import checks
from harness.mocks import SecretValue, reveal
from harness.run import ROOT, ProgramRun, run_program
from services.common import git_access
from tests.infra.test_platform_services_catalog import MODELS_KEY, airflow_values, catalog_json, objects, training_pods

STACKS = ["dev", "prod"]
SECURE = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBB"}  # what `pulumi config set --secret` writes
P = "mlops-platform:"


def private_stack_file(stack: str, folder: Path) -> Path:
    """Pulumi.<stack>.yaml with iris fetched over SSH (credentials iris) and diabetes over https (credentials
    diabetes), their keys and git-sync's as secure values."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config = doc["config"]
    models = config[MODELS_KEY]
    models["iris-classifier"]["training"]["source"] = {
        "repo": "git@github.com:acme/iris-models.git",
        "credentials": "iris",
        "subdir": "iris",
    }
    models["diabetes-regression"]["training"]["source"] = {
        "repo": "https://gitlab.com/acme/diabetes.git",
        "ref": "v3",
        "credentials": "diabetes",
    }
    config[f"{P}airflow.gitSshKey"] = SECURE
    config[f"{P}airflow.gitCredentials.iris.sshKey"] = SECURE
    config[f"{P}airflow.gitCredentials.diabetes.token"] = SECURE
    config[f"{P}airflow.gitCredentials.diabetes.username"] = "deploy-bot"
    path = folder / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


_RUNS: dict[str, ProgramRun] = {}


@pytest.fixture
def private_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    def get(stack: str) -> ProgramRun:
        if stack not in _RUNS:
            _RUNS[stack] = run_program(stack, private_stack_file(stack, tmp_path_factory.mktemp(stack)))
        return _RUNS[stack]

    return get


def in_airflow(run: ProgramRun, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(run, kind) if o["metadata"]["name"] == name]
    assert found["metadata"]["namespace"] == f"mlops-{run.stack}-airflow"
    return found


def secret_data(run: ProgramRun, name: str) -> dict[str, str]:
    """The content of Secret `name`, checked to reach the engine as a secret (the whole map is one)."""
    (found,) = [
        r.inputs["stringData"]
        for r in run.of_type("kubernetes:core/v1:Secret")
        if reveal(r.inputs)["metadata"]["name"] == name
    ]
    assert isinstance(found, SecretValue), name
    data: dict[str, str] = reveal(found)
    return data


@pytest.mark.parametrize("stack", STACKS)
def test_each_named_credential_is_a_secret_of_files_in_the_airflow_namespace(stack: str, private_run: Any) -> None:
    run = private_run(stack)
    iris, diabetes = git_access.secret_name("iris"), git_access.secret_name("diabetes")
    assert set(in_airflow(run, "Secret", iris)["stringData"]) == {git_access.SSH_KEY_FILE}
    assert set(in_airflow(run, "Secret", diabetes)["stringData"]) == {git_access.TOKEN_FILE, git_access.USERNAME_FILE}
    key = secret_data(run, iris)[git_access.SSH_KEY_FILE]
    assert key == f"harness-secret-value-for-{P}airflow.gitCredentials.iris.sshKey\n"  # OpenSSH needs the newline
    token = secret_data(run, diabetes)
    assert token == {
        "token": f"harness-secret-value-for-{P}airflow.gitCredentials.diabetes.token",
        "username": "deploy-bot",
    }
    assert secret_data(run, git_access.DEPLOY_KEY_SECRET)[git_access.DEPLOY_KEY_KEY].endswith("\n")


@pytest.mark.parametrize("stack", STACKS)
def test_the_pinned_host_keys_reach_the_task_pods_and_git_sync(stack: str, private_run: Any) -> None:
    run = private_run(stack)
    known_hosts = in_airflow(run, "ConfigMap", git_access.KNOWN_HOSTS_CONFIGMAP)["data"]
    assert known_hosts == {git_access.KNOWN_HOSTS_FILE: git_access.DEFAULT_KNOWN_HOSTS}
    git_sync = airflow_values(run)["dags"]["gitSync"]
    assert git_sync["sshKeySecret"] == git_access.DEPLOY_KEY_SECRET
    assert git_sync["knownHosts"] == git_access.DEFAULT_KNOWN_HOSTS


@pytest.mark.parametrize("stack", STACKS)
def test_the_training_pods_refer_only_to_what_the_program_creates_and_the_checks_stay_green(
    stack: str, private_run: Any
) -> None:
    run = private_run(stack)
    have, namespace = checks.inventory(run), f"mlops-{stack}-airflow"
    pods = training_pods(catalog_json(run))
    referred = {model: set(checks.pod_refs(pod["spec"])) for model, pod in pods.items()}
    assert referred == {
        "iris-classifier": {("ConfigMap", "git-known-hosts"), ("Secret", "git-credentials-iris")},
        "diabetes-regression": {("ConfigMap", "git-known-hosts"), ("Secret", "git-credentials-diabetes")},
    }
    assert all((kind, namespace, name) in have for refs in referred.values() for kind, name in refs)
    assert checks.reference_problems(run) == []
    assert checks.plaintext_secret_problems(run) == []
    assert checks.helm_values_problems(run) == []


@pytest.mark.parametrize("stack", STACKS)
def test_the_task_user_reads_the_files_through_the_pods_fs_group(stack: str, private_run: Any) -> None:
    pod = airflow_values(private_run(stack))["securityContexts"]["pod"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == airflow.AIRFLOW_UID != 0
    # the projected files are root's, group fsGroup, mode 0440: the task user reads them through its group
    assert pod["fsGroup"] == airflow.AIRFLOW_GID


def egress_ports(run: ProgramRun) -> set[int]:
    """The ports the Airflow namespace's NetworkPolicies let its pods reach outside the cluster."""
    ports = set()
    for policy in objects(run, "NetworkPolicy"):
        if policy["metadata"]["namespace"] != f"mlops-{run.stack}-airflow":
            continue
        for rule in policy["spec"].get("egress", []):
            if any("ipBlock" in peer for peer in rule.get("to", [])):
                ports |= {p["port"] for p in rule.get("ports", [])}
    return ports


@pytest.mark.parametrize("stack", STACKS)
def test_ssh_egress_follows_the_repositories_fetched(stack: str, private_run: Any, stack_run: Any) -> None:
    assert 22 in egress_ports(private_run(stack))  # iris over SSH, in dev where git-sync uses https too
    assert (22 in egress_ports(stack_run(stack))) == (stack == "prod")  # git-sync's repository only
