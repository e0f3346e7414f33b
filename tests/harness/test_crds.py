"""Custom resources are validated strictly against the `openAPIV3Schema` of their CRD in ../shared/crds.

Both stacks' custom resources pass; objects broken in one field (unknown field, wrong type, missing
required field, bad enum value, bad metadata) fail with a message naming the object and the field;
an object whose CRD or version is absent fails; the structural-schema extensions (int-or-string,
preserve-unknown-fields, embedded resources, nullable, list types) behave as the API server's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import checks, crds
from harness.mocks import Registration
from tests.harness.fakes import custom, k8s, run_of

CERT_MANAGER = "cert-manager.io/v1"
TRAEFIK = "traefik.io/v1alpha1"
MONITORING = "monitoring.coreos.com/v1"


def certificate(**spec: Any) -> Registration:
    body = {
        "secretName": "web-tls",
        "dnsNames": ["web.example.com"],
        "duration": "2160h",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "issuerRef": {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
    }
    return custom(CERT_MANAGER, "Certificate", "web", spec={**body, **spec})


def acme_issuer(solver: dict[str, Any]) -> Registration:
    spec = {"acme": {"server": "https://acme.example/dir", "privateKeySecretRef": {"name": "k"}, "solvers": [solver]}}
    return custom(CERT_MANAGER, "ClusterIssuer", "acme", namespace=None, spec=spec)


def service_monitor(*endpoints: dict[str, Any]) -> Registration:
    spec = {"selector": {"matchLabels": {"app": "web"}}, "endpoints": list(endpoints)}
    return custom(MONITORING, "ServiceMonitor", "web", spec=spec)


def problems_of(*objects: Registration) -> list[str]:
    return checks.custom_resource_problems(run_of(*objects))


# --- the program's own custom resources ----------------------------------------------------------
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_custom_resource_of_the_stack_matches_its_crd(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    kinds = {r.manifest["kind"] for r in checks.crd_objects(run)}
    assert {"Certificate", "ClusterIssuer"} <= kinds
    assert checks.custom_resource_problems(run) == []


# --- valid objects of each CRD family ------------------------------------------------------------
def test_valid_custom_resources_of_every_family_pass() -> None:
    route = {
        "match": "Host(`web.example.com`)",
        "kind": "Rule",
        "services": [{"name": "web", "port": 8000}],
        "middlewares": [{"name": "strip"}],
    }
    rule = {"alert": "Down", "expr": "up == 0", "for": "5m", "labels": {"severity": "page"}}
    objects = [
        certificate(),
        custom(CERT_MANAGER, "ClusterIssuer", "selfsigned", namespace=None, spec={"selfSigned": {}}),
        custom(CERT_MANAGER, "Issuer", "ca", spec={"ca": {"secretName": "root-ca"}}),
        acme_issuer({"http01": {"ingress": {"ingressClassName": "traefik"}}}),
        custom(TRAEFIK, "IngressRoute", "web", spec={"entryPoints": ["websecure"], "routes": [route]}),
        custom(TRAEFIK, "Middleware", "strip", spec={"stripPrefix": {"prefixes": ["/api"]}}),
        service_monitor({"port": "http", "path": "/metrics", "interval": "30s"}),
        custom(MONITORING, "PrometheusRule", "web", spec={"groups": [{"name": "web", "rules": [rule]}]}),
    ]
    assert problems_of(*objects) == []
    assert checks.crd_objects(run_of(*objects)) == objects
    assert checks.kubernetes_schema_problems(run_of(*objects), ("1.30", "1.37")) == []


# --- broken objects --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (certificate(bogus=True), "spec.bogus: unknown field (allowed here: additionalOutputFormats, commonName"),
        (certificate(secretName=5), "spec.secretName: 5 is not of type 'string'"),
        (certificate(issuerRef={"kind": "ClusterIssuer"}), "spec.issuerRef.name: required field missing"),
        (
            certificate(privateKey={"algorithm": "EC"}),
            "spec.privateKey.algorithm: 'EC' is not one of ['RSA', 'ECDSA', 'Ed25519']",
        ),
        (certificate(privateKey={"size": 256.5}), "spec.privateKey.size: 256.5 is not of type 'integer'"),
        (custom(CERT_MANAGER, "ClusterIssuer", "ca", namespace=None), "spec: required field missing"),
        (custom(CERT_MANAGER, "Issuer", "ca", spec={"ca": {"secretName": "s"}}, extra=1), "extra: unknown field"),
        (
            custom(CERT_MANAGER, "ClusterIssuer", "ca", spec={"ca": {"secretName": "s"}}),
            "metadata.namespace: ClusterIssuer is cluster-scoped and takes no namespace",
        ),
        (
            custom(TRAEFIK, "Middleware", "strip", spec={"stripPrefix": {"prefixes": ["/api"], "prefix": "/x"}}),
            "spec.stripPrefix.prefix: unknown field (allowed here: forceSlash, prefixes)",
        ),
        (
            custom(TRAEFIK, "IngressRoute", "web", spec={"routes": [{"match": "Host(`a`)", "kind": "Route"}]}),
            "spec.routes[0].kind: 'Route' is not one of ['Rule']",
        ),
        (service_monitor({"interval": "30 seconds"}), "spec.endpoints[0].interval: '30 seconds' does not match"),
        (
            custom(MONITORING, "PrometheusRule", "r", spec={"groups": [{"name": "g"}, {"name": "g"}]}),
            "spec.groups[1]: duplicate entry {'name': 'g'}",
        ),
    ],
)
def test_broken_custom_resources_fail_naming_object_and_field(broken: Registration, expected: str) -> None:
    problems = problems_of(broken)
    described = checks.kubernetes_schema_problems(run_of(broken), ("1.30", "1.37"))
    assert described == problems, "custom resources are validated once, by the Kubernetes schema check"
    kind, name = broken.manifest["kind"], broken.manifest["metadata"]["name"]
    matching = [p for p in problems if expected in p]
    assert matching, problems
    assert all(
        p.startswith(f"{kind} ") and f"{name} ({broken.name}) is invalid against its CRD: " in p for p in problems
    )


def test_metadata_is_kubernetes_object_meta() -> None:
    issuer = custom(CERT_MANAGER, "Issuer", "ca", spec={"ca": {"secretName": "s"}})
    issuer.inputs["metadata"].update(
        labels={"bad key!": "v", "app": "bad value!", "app.kubernetes.io/name": "ok"}, owner="me"
    )
    problems = problems_of(issuer)
    assert any("metadata.owner: unknown field (allowed here: annotations" in p for p in problems), problems
    assert any("metadata.labels: key 'bad key!' does not match" in p for p in problems), problems
    assert any("metadata.labels.app: 'bad value!' does not match" in p for p in problems), problems
    assert len(problems) == 3, problems
    bad_name = custom(CERT_MANAGER, "Issuer", "Bad_Name", spec={"ca": {"secretName": "s"}})
    assert any("metadata.name: 'Bad_Name' does not match" in p for p in problems_of(bad_name))


# --- unknown CRDs and versions -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        (
            "postgresql.cnpg.io/v1",
            "Cluster",
            "no CustomResourceDefinition for Cluster in API group 'postgresql.cnpg.io'",
        ),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "no CustomResourceDefinition for HTTPRoute"),
        (CERT_MANAGER, "Certifcate", "no CustomResourceDefinition for Certifcate in API group 'cert-manager.io'"),
        ("cert-manager.io/v1alpha2", "Certificate", "cert-manager.io/v1alpha2 is not a served version of Certificate"),
    ],
)
def test_custom_resource_without_a_crd_fails(api_version: str, kind: str, expected: str) -> None:
    obj = custom(api_version, kind, "x", spec={})
    assert checks.crd_objects(run_of(obj)) == [obj]
    problems = checks.kubernetes_schema_problems(run_of(obj), ("1.30", "1.37"))
    assert len(problems) == 1 and expected in problems[0], problems


def test_built_in_objects_are_not_custom_resources() -> None:
    built_in = [k8s("ConfigMap", "c", data={}), k8s("Ingress", "i", spec={}), k8s("FlowSchema", "f", namespace=None)]
    assert checks.crd_objects(run_of(*built_in)) == []


def test_a_missing_crd_folder_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(crds.CrdFolderMissing, match="no CRD folder"):
        checks.custom_resource_problems(run_of(certificate()), tmp_path / "crds")


# --- structural-schema extensions -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("port", "ok"), [(8080, True), ("metrics", True), (8080.5, False), (True, False), ([1], False)]
)
def test_int_or_string(port: Any, ok: bool) -> None:
    problems = problems_of(service_monitor({"targetPort": port}))
    assert (
        problems == []
        if ok
        else problems
        == [
            f"ServiceMonitor apps/web (servicemonitor-web) is invalid against its CRD: "
            f"spec.endpoints[0].targetPort: {port!r} is not of type 'integer', 'string'"
        ]
    )


def test_preserve_unknown_fields_accepts_anything_only_where_declared() -> None:
    webhook = {"groupName": "acme.example.com", "solverName": "dns", "config": {"apiKey": {"any": [1, {"x": None}]}}}
    assert problems_of(acme_issuer({"dns01": {"webhook": webhook}})) == []
    assert problems_of(custom(TRAEFIK, "Middleware", "p", spec={"plugin": {"mine": {"any": {"deep": [1]}}}})) == []
    problems = problems_of(acme_issuer({"dns01": {"webhook": {**webhook, "bogus": 1}}}))
    assert len(problems) == 1 and "spec.acme.solvers[0].dns01.webhook.bogus: unknown field" in problems[0]


SYNTHETIC_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets"},
        "versions": [
            {"name": "v1beta1", "served": False, "storage": False, "schema": {"openAPIV3Schema": {"type": "object"}}},
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "template": {"type": "object", "x-kubernetes-embedded-resource": True},
                                    "raw": {
                                        "type": "object",
                                        "x-kubernetes-embedded-resource": True,
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "note": {"type": "string", "nullable": True, "enum": ["a", "b"]},
                                    "weight": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
                                    "hosts": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "x-kubernetes-list-type": "set",
                                    },
                                    "caBundle": {"type": "string", "format": "byte"},
                                    "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "empty": {"type": "object"},
                                },
                            },
                        },
                    }
                },
            },
        ],
    },
}


@pytest.fixture
def widgets(tmp_path: Path) -> crds.CrdIndex:
    (tmp_path / "example.com_widgets.yaml").write_text(yaml.safe_dump(SYNTHETIC_CRD))
    return crds.CrdIndex(tmp_path)


def widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "a"}, "spec": spec}


def test_structural_extensions_accept_what_the_api_server_accepts(widgets: crds.CrdIndex) -> None:
    good = widget(
        template={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        raw={"apiVersion": "v1", "kind": "Pod", "spec": {"anything": True}},
        note=None,
        weight=1,
        hosts=["a", "b"],
        caBundle="aGVsbG8=",
        tags={"any": "key"},
        empty={},
    )
    assert widgets.problems(good) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"template": {"kind": "ConfigMap"}}, "spec.template.apiVersion: required field missing"),
        ({"template": {"apiVersion": "v1", "kind": "C", "data": {}}}, "spec.template.data: unknown field"),
        (
            {"template": {"apiVersion": "v1", "kind": "C", "metadata": {"nam": "c"}}},
            "spec.template.metadata.nam: unknown",
        ),
        ({"raw": {"kind": "Pod"}}, "spec.raw.apiVersion: required field missing"),
        ({"note": "c"}, "spec.note: 'c' is not one of ['a', 'b']"),
        ({"weight": 0}, "spec.weight: 0 is less than or equal to the minimum of 0"),
        ({"hosts": ["a", "a"]}, "spec.hosts: ['a', 'a'] has non-unique elements"),
        ({"caBundle": "not base64!"}, "spec.caBundle: 'not base64!' is not a 'byte'"),
        ({"tags": {"k": 1}}, "spec.tags.k: 1 is not of type 'string'"),
        ({"empty": {"x": 1}}, "spec.empty.x: unknown field (no field is allowed here)"),
    ],
)
def test_structural_extensions_reject_what_the_api_server_rejects(
    widgets: crds.CrdIndex, spec: dict[str, Any], expected: str
) -> None:
    problems = widgets.problems(widget(**spec))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_unserved_version_and_compiled_validators_are_cached(widgets: crds.CrdIndex) -> None:
    assert widgets.problems({**widget(), "apiVersion": "example.com/v1beta1"}) == [
        "example.com/v1beta1 is not a served version of Widget (example.com_widgets.yaml serves ['v1'])"
    ]
    assert widgets.validator("example.com/v1", "Widget") is widgets.validator("example.com/v1", "Widget")
