"""The credentials-as-files and read-only-root checks (harness/checks.py): each passes a hardened pod or chart and
fails every way a credential can reach a container through env or argv, and every writable root filesystem, in
every kind of pod template and through Helm values; only the listed chart limitations are accepted, each with a
reason; and both shipped stacks pass."""

from __future__ import annotations

from typing import Any

import pytest

from harness import checks
from tests.harness.fakes import container, deployment, helm, k8s, run_of

READ_ONLY = {"readOnlyRootFilesystem": True}
SECRET_KEY_ENV = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}


def hardened(**extra: Any) -> dict[str, Any]:
    """A container that takes its password as a file of the mounted Secret, with a read-only root."""
    return container(
        env=[{"name": "DB_PASSWORD_FILE", "value": "/var/run/secrets/mlops/db/password"}],
        volumeMounts=[{"name": "db", "mountPath": "/var/run/secrets/mlops/db", "readOnly": True}],
        securityContext=READ_ONLY,
        **extra,
    )


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers), "volumes": [{"name": "db", "secret": {"secretName": "db"}}]}
    if init:
        spec["initContainers"] = list(init)
    return spec


def job(name: str, spec: dict[str, Any]) -> Any:
    return k8s("Job", name, spec={"template": {"spec": {"restartPolicy": "OnFailure", **spec}}})


def cron_job(name: str, spec: dict[str, Any]) -> Any:
    template = {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", **spec}}}}
    return k8s("CronJob", name, spec={"schedule": "0 * * * *", "jobTemplate": template})


def test_a_pod_with_credentials_as_files_and_a_read_only_root_passes() -> None:
    run = run_of(
        deployment("web", pod(hardened())),
        job("once", pod(hardened(command=["/bin/sh", "/sql/bootstrap.sh"]))),
        cron_job("nightly", pod(hardened(args=["--user", "reader", "--password-file", "/run/pw"]))),
        k8s("StatefulSet", "db", spec={"serviceName": "db", "template": {"spec": pod(hardened())}}),
    )
    assert checks.credential_exposure_problems(run) == []
    assert checks.writable_root_problems(run) == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (container(env=[SECRET_KEY_ENV]), "env DB_PASSWORD from Secret db"),
        (container(envFrom=[{"secretRef": {"name": "creds"}}]), "envFrom Secret creds"),
        (container(command=["psql", "-v", 'app_password="$APP_PASSWORD"', "-f", "x.sql"]), "command line"),
        (container(command=["/bin/sh", "-c", 'PGPASSWORD="$(cat /pw)" psql -c "SELECT 1"']), "PGPASSWORD="),
        (container(args=["users", "create", "--password", "hunter2"]), "'--password'"),
        (container(command=["/bin/bash", "-c", 'curl -H "Authorization: Bearer ${API_TOKEN}" x']), "API_TOKEN"),
    ],
    ids=["secretKeyRef", "envFrom-secretRef", "psql-v", "PGPASSWORD", "--password", "token-expansion"],
)
@pytest.mark.parametrize("where", ["Deployment", "Job", "CronJob", "initContainer"])
def test_a_credential_in_env_or_argv_fails_in_every_pod_template(
    broken: dict[str, Any], expected: str, where: str
) -> None:
    if where == "Deployment":
        reg = deployment("web", pod(hardened(name="ok"), {**broken, "securityContext": READ_ONLY}))
    elif where == "Job":
        reg = job("once", pod({**broken, "securityContext": READ_ONLY}))
    elif where == "CronJob":
        reg = cron_job("nightly", pod({**broken, "securityContext": READ_ONLY}))
    else:
        reg = deployment("web", pod(hardened(name="ok"), init=({**broken, "securityContext": READ_ONLY},)))
    problems = checks.credential_exposure_problems(run_of(reg))
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith(where if where != "initContainer" else "Deployment")


@pytest.mark.parametrize(
    "context",
    [None, {}, {"readOnlyRootFilesystem": False}, {"runAsNonRoot": True}],
    ids=["no-context", "empty", "false", "unset"],
)
def test_a_writable_root_fails_for_any_container_jobs_included(context: dict[str, Any] | None) -> None:
    writable = container(name="scratchy", **({"securityContext": context} if context is not None else {}))
    for reg in (
        deployment("web", pod(hardened(), writable)),
        job("once", pod(writable)),
        cron_job("nightly", pod(hardened(), init=(writable,))),
    ):
        problems = checks.writable_root_problems(run_of(reg))
        assert len(problems) == 1 and "container scratchy has a writable root filesystem" in problems[0], problems


def test_helm_values_that_take_a_secret_as_env_fail_unless_accepted() -> None:
    loki_env_from = {"singleBinary": {"extraEnvFrom": [{"secretRef": {"name": "loki-s3"}}]}}
    problems = checks.credential_exposure_problems(run_of(helm("loki", "loki", "18.11.0", loki_env_from)))
    assert problems == [
        "Helm release release-loki (loki): values.singleBinary.extraEnvFrom.0 makes the chart take a Secret as "
        "environment"
    ]
    # inside the Airflow chart's YAML strings, and its own secret-to-env values
    airflow = {
        "extraEnvFrom": "- secretRef:\n    name: mlops-serving-reload-token\n",
        "env": [SECRET_KEY_ENV],
        "data": {"resultBackendSecretName": "backend"},
    }
    found = checks.credential_exposure_problems(run_of(helm("airflow", "airflow", "1.21.0", airflow)))
    assert {p.split("values.")[1].split(" ")[0] for p in found} == {
        "extraEnvFrom.0",
        "env.0.valueFrom",
        "data.resultBackendSecretName",
    }
    # a chart limitation listed in ACCEPTED_SECRET_ENV passes; the same value in another chart does not
    accepted = {"data": {"metadataSecretName": "airflow-metadata"}, "secret": [{"secretName": "conn"}]}
    assert checks.credential_exposure_problems(run_of(helm("airflow", "airflow", "1.21.0", accepted))) == []


def test_chart_container_contexts_must_stay_read_only() -> None:
    # the chart's default is read-only: not overriding it passes, turning it off fails
    assert checks.writable_root_problems(run_of(helm("mlflow", "mlflow", "1.11.5", {}))) == []
    off = {"securityContext": {"readOnlyRootFilesystem": False}}
    assert checks.writable_root_problems(run_of(helm("mlflow", "mlflow", "1.11.5", off))) == [
        "Helm release release-mlflow (mlflow): values.securityContext has no readOnlyRootFilesystem"
    ]
    loki = {"loki": {"containerSecurityContext": {"readOnlyRootFilesystem": False}}}
    assert checks.writable_root_problems(run_of(helm("loki", "loki", "18.11.0", loki)))


def test_every_accepted_exception_has_a_reason_and_names_a_chart_mechanism() -> None:
    for (chart, pattern), reason in checks.ACCEPTED_SECRET_ENV.items():
        assert len(reason) > 40, (chart, pattern)
        assert any(pattern == known for known in checks.CHART_SECRET_ENV.get(chart, [])), (
            f"{chart} {pattern} is accepted but is no known secret-to-env mechanism of the chart"
        )
    for (chart, pattern), reason in checks.ACCEPTED_WRITABLE_ROOT.items():
        assert len(reason) > 40 and chart in checks.CHART_CONTAINER_CONTEXTS, (chart, pattern)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_both_stacks_hold_no_credential_in_env_or_argv_and_only_read_only_roots(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    assert checks.credential_exposure_problems(run) == []
    assert checks.writable_root_problems(run) == []
    containers = [c for r in run.kubernetes_objects() for c in checks._containers(checks.pod_spec(r.manifest) or {})]
    assert len(containers) >= 6  # the serving Deployments, the API, the Jobs and the CronJob were all looked at
