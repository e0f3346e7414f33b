"""The harness checks themselves: each one passes a good object and fails a deliberately broken one."""

from __future__ import annotations

from typing import Any

import pytest

from harness import checks
from harness.mocks import SecretValue
from tests.harness.fakes import COMPONENT_URN, STACK_URN, container, custom, deployment, helm, k8s, reg, run_of

VERSIONS = ("1.30", "1.37")


# --- Kubernetes schemas ----------------------------------------------------------------------------
def test_valid_objects_pass_for_both_versions() -> None:
    run = run_of(
        deployment("web", {"containers": [container(ports=[{"containerPort": 8000}])]}),
        k8s("ConfigMap", "settings", data={"A": "1"}),
        k8s(
            "HorizontalPodAutoscaler",
            "web",
            spec={"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3},
        ),
    )
    assert checks.kubernetes_schema_problems(run, VERSIONS) == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (deployment("web", {"containers": [container(ports=[{"containerPort": "8000"}])]}), "is not of type 'integer'"),
        (deployment("web", {"containers": [container(imagePullPolicy="Always", bogus=True)]}), "Additional properties"),
        (k8s("ConfigMap", "settings", data={"A": 1}), "is not of type 'string'"),
        (k8s("ConfigMap", "Bad_Name", data={}), "not a valid DNS subdomain"),
        (deployment("web", {}), "'containers' is a required property"),
    ],
)
def test_broken_objects_fail(broken: Any, expected: str) -> None:
    problems = checks.kubernetes_schema_problems(run_of(broken), VERSIONS)
    assert problems, "a broken object passed the schema check"
    assert any(expected in p for p in problems), problems


def test_api_removed_in_newer_kubernetes_fails_there_only() -> None:
    # flowcontrol v1beta1 was removed after 1.28: valid for neither 1.30 nor 1.37 -> both reported
    obj = k8s("FlowSchema", "fs", namespace=None, spec={"priorityLevelConfiguration": {"name": "x"}})
    problems = checks.kubernetes_schema_problems(run_of(obj), VERSIONS)
    assert any("1.30" in p for p in problems) and any("1.37" in p for p in problems)


def test_custom_resources_are_checked_against_their_crd() -> None:
    # the details are in test_crds.py
    good = k8s("ClusterIssuer", "ca", namespace=None, spec={"ca": {"secretName": "ca"}})
    bad = k8s("ClusterIssuer", "ca2", namespace=None)
    assert checks.kubernetes_schema_problems(run_of(good), VERSIONS) == []
    assert checks.kubernetes_schema_problems(run_of(bad), VERSIONS) == [
        "ClusterIssuer ca2 (clusterissuer-ca2) is invalid against its CRD: spec: required field missing"
    ]
    assert checks.crd_objects(run_of(good, bad)) == [good, bad]


# --- Helm values -------------------------------------------------------------------------------------
def test_helm_values_validate_against_the_chart_schema() -> None:
    good = helm("mlflow", "mlflow", "1.11.5", {"replicaCount": 2})
    assert checks.helm_values_problems(run_of(good)) == []
    wrong_type = helm("mlflow", "mlflow", "1.11.5", {"replicaCount": "two"})
    assert any("values.replicaCount" in p for p in checks.helm_values_problems(run_of(wrong_type)))
    unknown = helm("mlflow", "mlflow", "1.11.5", {"externalDatabase": {"host": "x"}})
    assert any("externalDatabase" in p for p in checks.helm_values_problems(run_of(unknown)))


def test_open_schema_root_checks_top_level_keys_against_values_yaml() -> None:
    # the Airflow chart's schema root accepts unknown keys; values.yaml is the reference
    assert (
        checks.helm_values_problems(run_of(helm("airflow", "airflow", "1.21.0", {"executor": "KubernetesExecutor"})))
        == []
    )
    problems = checks.helm_values_problems(
        run_of(helm("airflow", "airflow", "1.21.0", {"externalDatabase": {"host": "db"}}))
    )
    assert problems == [
        "Helm release release-airflow (airflow 1.21.0): values.externalDatabase is not a key of the chart's values.yaml"
    ]


def test_unpinned_or_unknown_chart_versions_fail() -> None:
    assert "no pinned version" in checks.helm_values_problems(run_of(helm("m", "mlflow", None, {})))[0]
    assert "has no folder" in checks.helm_values_problems(run_of(helm("m", "mlflow", "9.9.9", {})))[0]


# --- cross-references --------------------------------------------------------------------------------
def pod_using(name: str, namespace: str = "apps") -> dict[str, Any]:
    return {
        "serviceAccountName": "runner",
        "containers": [
            container(
                envFrom=[{"configMapRef": {"name": "endpoints"}}],
                env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "token", "key": "T"}}}],
            )
        ],
        "volumes": [
            {"name": "logs", "persistentVolumeClaim": {"claimName": "logs"}},
            {"name": "opt", "secret": {"secretName": "maybe", "optional": True}},
        ],
    }


def referenced_objects(namespace: str = "apps") -> list[Any]:
    return [
        k8s("ConfigMap", "endpoints", namespace, data={}),
        k8s("Secret", "token", namespace, stringData=SecretValue({"T": "x"})),
        k8s("PersistentVolumeClaim", "logs", namespace, spec={}),
        k8s("ServiceAccount", "runner", namespace),
    ]


def test_references_resolve_in_the_same_namespace() -> None:
    assert checks.reference_problems(run_of(deployment("w", pod_using("w")), *referenced_objects())) == []


def test_missing_reference_is_reported_by_kind() -> None:
    objs = referenced_objects()
    for i, missing in enumerate(
        [
            "ConfigMap apps/endpoints",
            "Secret apps/token",
            "PersistentVolumeClaim apps/logs",
            "ServiceAccount apps/runner",
        ]
    ):
        rest = objs[:i] + objs[i + 1 :]
        problems = checks.reference_problems(run_of(deployment("w", pod_using("w")), *rest))
        assert len(problems) == 1 and missing in problems[0], problems


def test_reference_to_another_namespace_is_reported() -> None:
    problems = checks.reference_problems(run_of(deployment("w", pod_using("w")), *referenced_objects("other")))
    assert len(problems) == 4


def test_helm_value_references() -> None:
    values = {
        "data": {"metadataSecretName": "airflow-metadata"},
        "fernetKeySecretName": "fernet",
        "extraEnvFrom": "- configMapRef:\n    name: endpoints\n",
    }
    release = helm("airflow", "airflow", "1.21.0", values)
    have = [
        k8s("Secret", "airflow-metadata", stringData=SecretValue({})),
        k8s("Secret", "fernet", stringData=SecretValue({})),
        k8s("ConfigMap", "endpoints", data={}),
    ]
    assert checks.reference_problems(run_of(release, *have)) == []
    problems = checks.reference_problems(run_of(release, *have[1:]))
    assert problems == [
        "Helm release release-airflow values data.metadataSecretName refers to Secret apps/airflow-metadata, which "
        "the program does not create"
    ]
    problems = checks.reference_problems(run_of(release, *have[:2]))
    assert problems == [
        "Helm release release-airflow values extraEnvFrom refers to ConfigMap apps/endpoints, which the program "
        "does not create"
    ]


# --- secrets -------------------------------------------------------------------------------------------
def test_secret_leaking_into_a_configmap_is_found() -> None:
    password = reg(
        "random:index/randomPassword:RandomPassword", "pw", {"length": 24}, outputs={"result": "s3cr3t-passw0rd-value"}
    )
    leaked = k8s("ConfigMap", "cfg", data={"DB_URL": "postgresql://u:s3cr3t-passw0rd-value@db/x"})
    problems = checks.plaintext_secret_problems(run_of(password, leaked))
    assert len(problems) == 1 and "ConfigMap" in problems[0] and "RandomPassword.result" in problems[0]
    wrapped = k8s("Secret", "db", stringData={"url": SecretValue("postgresql://u:s3cr3t-passw0rd-value@db/x")})
    assert checks.plaintext_secret_problems(run_of(password, wrapped)) == []


def test_user_names_in_secrets_are_identifiers_but_their_passwords_are_searched() -> None:
    creds = k8s(
        "Secret",
        "db",
        stringData={"username": SecretValue("mlflow_auth"), "password": SecretValue("s3cr3t-passw0rd-value")},
    )
    client = k8s(
        "Secret",
        "c",
        stringData=SecretValue(
            {"MLFLOW_TRACKING_USERNAME": "mlops-pipelines", "MLFLOW_TRACKING_PASSWORD": "an0ther-passw0rd"}
        ),
    )
    values = helm(
        "m", "mlflow", "1.11.5", {"auth": {"postgres": {"database": "mlflow_auth"}}, "note": "user mlops-pipelines"}
    )
    assert checks.plaintext_secret_problems(run_of(creds, client, values)) == []
    leaky = helm("m", "mlflow", "1.11.5", {"a": "s3cr3t-passw0rd-value", "b": "an0ther-passw0rd"})
    assert len(checks.plaintext_secret_problems(run_of(creds, client, leaky))) == 2


def test_secret_in_an_export_or_helm_values_is_found() -> None:
    key = reg(
        "aws:iam/accessKey:AccessKey",
        "key",
        {"user": "u"},
        outputs={"secret": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"},
    )
    values = helm(
        "m",
        "mlflow",
        "1.11.5",
        {"artifactRoot": {"s3": {"awsSecretAccessKey": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"}}},
    )
    problems = checks.plaintext_secret_problems(
        run_of(key, values, exports={"k": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"})
    )
    assert len(problems) == 2


def test_secret_data_must_be_a_secret_output() -> None:
    plain = k8s("Secret", "s", stringData={"token": "abc"})
    assert checks.plaintext_secret_problems(run_of(plain)) == [
        "Secret secret-s stringData.token is not a secret Output"
    ]


# --- structure -------------------------------------------------------------------------------------------
def test_resources_must_live_under_components_and_components_register_outputs() -> None:
    component = reg("mlops:test:Thing", "thing", {}, parent=STACK_URN, custom=False, registered_outputs={"x": 1})
    child = k8s("ConfigMap", "c", data={})
    assert checks.structure_problems(run_of(component, child)) == []
    orphan = reg("kubernetes:core/v1:ConfigMap", "orphan", {}, parent=STACK_URN)
    silent = reg("mlops:test:Thing", "silent", {}, parent=STACK_URN, custom=False)
    problems = checks.structure_problems(run_of(component, orphan, silent))
    assert problems == [
        "kubernetes:core/v1:ConfigMap orphan is not a child of a component (missing ResourceOptions(parent=self))",
        "component mlops:test:Thing silent registers no outputs",
    ]
    assert COMPONENT_URN  # the fakes' default parent is a component


def test_every_pinned_chart_has_its_values_files_here() -> None:
    """The charts CI fetches (harness.fetch_charts) are exactly the ones the shared folder holds."""
    from harness.fetch_charts import pinned_charts

    for chart, repo, version in pinned_charts():
        assert repo.startswith("https://")
        folder = checks.charts_dir() / chart / version
        assert (folder / "values.yaml").is_file() and (folder / "Chart.yaml").is_file(), folder


# --- routes ------------------------------------------------------------------------------------------
def web_pods(ports: list[dict[str, Any]]) -> Any:
    return deployment("web", {"containers": [container(ports=ports)]})


def web_service(*ports: dict[str, Any]) -> Any:
    return k8s("Service", "web", spec={"selector": {"app": "web"}, "ports": list(ports)})


HTTP_PORT = {"name": "http", "port": 80, "targetPort": "http"}
GRPC_PORT = {"name": "grpc", "port": 8081, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"}
POD_PORTS = [{"name": "http", "containerPort": 8000}, {"name": "grpc", "containerPort": 8081}]


def ingress_to(port: dict[str, Any]) -> Any:
    path = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": port}}}
    return k8s("Ingress", "web", spec={"rules": [{"host": "web.example.com", "http": {"paths": [path]}}]})


def route_to(port: Any, scheme: str | None = "h2c", service: str = "web") -> Any:
    backend = {"name": service, "port": port, **({"scheme": scheme} if scheme else {})}
    spec = {"routes": [{"match": "Host(`web.example.com`)", "services": [backend]}]}
    return custom("traefik.io/v1alpha1", "IngressRoute", "web-grpc", spec=spec)


def test_routes_that_reach_their_ports_in_the_ports_protocol_pass() -> None:
    run = run_of(web_pods(POD_PORTS), web_service(HTTP_PORT, GRPC_PORT), ingress_to({"name": "http"}), route_to("grpc"))
    assert checks.route_problems(run) == []
    assert {(b.service, b.port, b.scheme) for b in checks.route_backends(run)} == {
        ("web", "http", None),
        ("web", "grpc", "h2c"),
    }


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (ingress_to({"name": "metrics"}), "routes to Service apps/web port 'metrics', which the Service does not have"),
        (
            ingress_to({"number": 8081}),
            "speaks HTTP/1.1 to Service apps/web port 8081, whose appProtocol is kubernetes.io/h2c",
        ),
        (route_to("grpc", scheme=None), "speaks HTTP/1.1 to Service apps/web port 'grpc'"),
        (route_to("http"), "speaks h2c to Service apps/web port 'http', whose appProtocol is None"),
        (route_to(9000), "routes to Service apps/web port 9000, which the Service does not have"),
    ],
)
def test_a_route_to_a_missing_port_or_in_the_wrong_protocol_fails(broken: Any, expected: str) -> None:
    run = run_of(web_pods(POD_PORTS), web_service(HTTP_PORT, GRPC_PORT), broken)
    problems = checks.route_problems(run)
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_service_port_its_pods_do_not_name_fails() -> None:
    run = run_of(web_pods([{"name": "http", "containerPort": 8000}]), web_service(HTTP_PORT, GRPC_PORT))
    assert checks.route_problems(run) == [
        "Service apps/web (service-web) targets port 'grpc', which its pods do not name"
    ]
    assert "routes" in checks.all_problems(run, "1.30")
