"""Checks over a `ProgramRun`: what a cluster, Helm and a reviewer would reject, found offline.

Each check returns a list of problems (strings naming the resource and what is wrong); an empty
list means it passed. The harness's own tests feed each check a deliberately broken object to show
it fails.

- `kubernetes_schema_problems`: every built-in Kubernetes object against the Kubernetes OpenAPI
  schemas (kubernetes-validate, strict) for each version asked (the stack's oldest supported and
  1.37), and every custom resource (cert-manager, Traefik, Prometheus operator, ...; listed by
  `crd_objects`) strictly against the `openAPIV3Schema` of its CRD in ../shared/crds
  (`custom_resource_problems`, see `harness.crds`). A custom resource whose CRD or version is not
  there is a problem.
- `helm_values_problems`: every Helm release's values against its chart's `values.schema.json` in
  ../shared/charts/<chart>/<version>/ (and top-level keys against `values.yaml` where the schema
  root accepts unknown keys). A release without a pinned version or without a folder there fails.
- `reference_problems`: every Secret, ConfigMap, PersistentVolumeClaim and ServiceAccount that a pod
  spec or Helm values refer to by name exists in that namespace.
- `route_problems`: every Ingress and Traefik IngressRoute reaches a port its Service has, speaking the protocol the
  port declares (appProtocol kubernetes.io/h2c: only a route with scheme h2c), and every named targetPort of a
  Service is a container port of the pods it selects.
- `plaintext_secret_problems`: no secret value appears outside a secret (in any input, Helm value,
  ConfigMap or export); every Kubernetes Secret's data is a secret Output.
- `credential_exposure_problems`: no container takes a credential as an environment variable from a Secret
  (`valueFrom.secretKeyRef`, `envFrom.secretRef`) or on its command line, in any pod template or through any Helm
  release's values, except the chart limitations listed once in `ACCEPTED_SECRET_ENV` with their reasons.
- `writable_root_problems`: every container has a read-only root filesystem (the charts' container contexts too,
  except `ACCEPTED_WRITABLE_ROOT`).
- `structure_problems`: every resource is a child of a component (ResourceOptions(parent=self)),
  and every component registers real outputs.
- apply order (`harness.order`): what each object waits for, and what `pulumi destroy --exclude-protected`
  or a Namespace's replacement would delete with it.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv_utils
import yaml
from referencing import Registry, Resource

from harness import crds
from harness.mocks import Registration, SecretValue, reveal
from harness.run import ProgramRun, shared_dir

LATEST_KUBERNETES = "1.37"


def charts_dir() -> Path:
    return shared_dir() / "charts"


def crds_dir() -> Path:
    """The CRDs beside the charts: ../shared/crds, or $MLOPS_SHARED_DIR/crds where the test dependencies
    script fetched both (tools/install-test-dependencies.sh, harness.fetch_charts)."""
    return shared_dir() / "crds"


def _full_version(minor: str) -> str:
    return minor if minor.count(".") == 2 else f"{minor}.0"


# --- Kubernetes schemas -------------------------------------------------------------------------
_DNS_SUBDOMAIN = re.compile(f"^{crds.DNS_SUBDOMAIN}$")


def _is_custom(obj: dict[str, Any]) -> bool:
    return crds.is_custom_resource(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))


def crd_objects(run: ProgramRun) -> list[Registration]:
    """The custom resources the run creates (objects of API groups served by CRDs)."""
    return [r for r in run.kubernetes_objects() if _is_custom(r.manifest)]


def _describe(reg: Registration) -> str:
    m = reg.manifest
    meta = m.get("metadata") or {}
    ns = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{m.get('kind', reg.type)} {ns}{meta.get('name', reg.name)} ({reg.name})"


def _name_problem(obj: dict[str, Any]) -> str | None:
    name = (obj.get("metadata") or {}).get("name")
    if not name or not _DNS_SUBDOMAIN.match(str(name)):
        return f"metadata.name {name!r} is not a valid DNS subdomain name"
    return None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in _full_version(version).split("."))


@functools.cache
def _schema_version(version: str) -> str:
    """kubernetes-validate's schemas for `version`: the newest it ships that is not newer."""
    wanted = _version_key(version)
    shipped = [v for v in kv_utils.all_versions() if _version_key(v) <= wanted]
    if wanted > _version_key(kv_utils.latest_version()) or not shipped:
        raise kv_utils.VersionNotSupportedError(version)
    return shipped[-1]


@functools.cache
def _builtin_validator(schema_version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    """kubernetes-validate's strict schema of one kind, compiled once (`kubernetes_validate.validate`
    re-reads the 1.8 MB definitions for every object); None when it has no schema for the kind."""
    schema_dir = f"kubernetes-json-schema/v{schema_version}-local-strict"
    # its file naming: rbac.authorization.k8s.io/v1 -> rbac-v1
    stem = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(f"{schema_dir}/{kind.lower()}-{stem}.json", schema_version)
    except FileNotFoundError:
        return None
    definitions = Resource.from_contents(kv_utils.schema_contents(f"{schema_dir}/_definitions.json", schema_version))
    registry = definitions @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_object(obj: dict[str, Any], version: str) -> str | None:
    """One built-in object against one Kubernetes version (kubernetes-validate's strict schemas);
    returns the problem or None."""
    name_problem = _name_problem(obj)
    if name_problem:
        return name_problem
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    validator = _builtin_validator(_schema_version(version), kind, api_version)
    if validator is None:
        return f"no schema for kind {kind} with api version {api_version} in Kubernetes {version}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return None
    path = "/".join(str(p) for p in error.path)
    return error.message + (f" (at {path})" if path else "")


def custom_resource_problems(run: ProgramRun, folder: Path | None = None) -> list[str]:
    """Every custom resource strictly against its CRD's schema (the same for every Kubernetes version),
    from `folder` (default `crds_dir()`); a missing folder raises."""
    index = crds.load_index(folder or crds_dir())
    problems: list[str] = []
    for reg in crd_objects(run):
        obj = reg.manifest
        found = index.problems(obj)
        if not (obj.get("metadata") or {}).get("name"):
            found.insert(0, "metadata.name: required field missing")
        problems.extend(f"{_describe(reg)} is invalid against its CRD: {p}" for p in found)
    return problems


def kubernetes_schema_problems(run: ProgramRun, versions: Iterable[str]) -> list[str]:
    problems = []
    for reg in run.kubernetes_objects():
        obj = reg.manifest
        if _is_custom(obj):
            continue
        for version in versions:
            problem = validate_object(obj, version)
            if problem:
                problems.append(f"{_describe(reg)} is invalid for Kubernetes {version}: {problem}")
    return problems + custom_resource_problems(run)


# --- Helm values ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    folder: Path

    @property
    def schema(self) -> dict[str, Any] | None:
        path = self.folder / "values.schema.json"
        return json.loads(path.read_text()) if path.exists() else None

    @property
    def default_values(self) -> dict[str, Any]:
        return yaml.safe_load((self.folder / "values.yaml").read_text()) or {}

    @property
    def subcharts(self) -> frozenset[str]:
        """The values keys of the chart's dependencies (their alias, else their name), from Chart.yaml."""
        path = self.folder / "Chart.yaml"
        meta = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
        return frozenset(str(d.get("alias") or d.get("name")) for d in meta.get("dependencies") or [])


def release_chart(reg: Registration) -> tuple[Chart | None, str | None]:
    inputs = reveal(reg.inputs)
    name = inputs.get("chart")
    version = inputs.get("version")
    if not name:
        return None, "has no chart name"
    name = str(name).rsplit("/", 1)[-1]
    if not version:
        return None, f"chart {name} has no pinned version"
    folder = charts_dir() / name / str(version)
    if not folder.is_dir():
        return None, f"chart {name} {version} has no folder {folder} to validate its values against"
    return Chart(name, str(version), folder), None


def _schema_root_open(schema: dict[str, Any]) -> bool:
    return schema.get("additionalProperties", True) is not False


def helm_values_problems(run: ProgramRun) -> list[str]:
    problems = []
    for reg in run.helm_releases():
        chart, problem = release_chart(reg)
        if chart is None:
            problems.append(f"Helm release {reg.name} {problem}")
            continue
        values = reveal(reg.inputs).get("values") or {}
        problems.extend(
            f"Helm release {reg.name} ({chart.name} {chart.version}): {p}" for p in values_problems(chart, values)
        )
    return problems


def helm_merge(defaults: Any, overrides: Any) -> Any:
    """Helm's coalescing of user values over chart defaults: maps merge deeply, anything else
    replaces, and a null override deletes the default key."""
    if isinstance(defaults, dict) and isinstance(overrides, dict):
        merged = dict(defaults)
        for key, value in overrides.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = helm_merge(defaults.get(key), value)
        return merged
    return overrides


def unknown_value_keys(
    defaults: Any, values: Any, path: str = "values", subcharts: frozenset[str] = frozenset()
) -> list[str]:
    """For a chart without a schema (kube-prometheus-stack, Alloy): every key of `values` must be a key of the
    chart's values.yaml at the same place. Below a key whose default is empty (`{}`, null, a list) or that names
    a dependency chart (its values are not in this chart's values.yaml), anything goes."""
    if not isinstance(values, dict) or not isinstance(defaults, dict) or not defaults:
        return []
    problems = []
    for key, value in values.items():
        where = f"{path}.{key}"
        if key not in defaults:
            if not (path == "values" and key in subcharts):
                problems.append(f"{where} is not a key of the chart's values.yaml")
            continue
        if not (path == "values" and key in subcharts):
            problems.extend(unknown_value_keys(defaults[key], value, where))
    return problems


def values_problems(chart: Chart, values: dict[str, Any]) -> list[str]:
    """Helm validates the chart's schema against the defaults coalesced with the user's values."""
    problems = []
    schema = chart.schema
    if schema is None:
        return unknown_value_keys(chart.default_values, values, subcharts=chart.subcharts)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    merged = helm_merge(chart.default_values, values)
    for error in sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"values.{where}: {error.message[:300]}")
    if _schema_root_open(schema):
        known = set(chart.default_values)
        for key in sorted(set(values) - known):
            problems.append(f"values.{key} is not a key of the chart's values.yaml")
    return problems


# --- cross-references ----------------------------------------------------------------------------
Ref = tuple[str, str, str]  # (kind, namespace, name)
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}
REFERABLE_KINDS = ("Secret", "ConfigMap", "PersistentVolumeClaim", "ServiceAccount")

# Per chart: value paths (dot-separated; `*` matches a list index or a key) naming an object the
# program must create, and paths naming objects the chart creates itself. Pod-spec fragments in
# values (volumes, envFrom, env valueFrom, ...) are found by the generic walk as well.
CHART_REFERENCES: dict[str, list[tuple[str, str]]] = {
    "mlflow": [
        ("backendStore.existingDatabaseSecret.name", "Secret"),
        ("backendStore.postgres.existingSecret.name", "Secret"),
        ("artifactRoot.s3.existingSecret.name", "Secret"),
        ("auth.existingAdminSecret.name", "Secret"),
        ("auth.postgres.existingSecret.name", "Secret"),
        ("extraSecretNamesForEnvFrom.*", "Secret"),
        ("serviceAccount.name@if-not-create", "ServiceAccount"),
    ],
    "airflow": [
        ("data.metadataSecretName", "Secret"),
        ("data.resultBackendSecretName", "Secret"),
        ("data.brokerUrlSecretName", "Secret"),
        ("fernetKeySecretName", "Secret"),
        ("apiSecretKeySecretName", "Secret"),
        ("jwtSecretName", "Secret"),
        ("webserverSecretKeySecretName", "Secret"),
        ("dags.gitSync.sshKeySecret", "Secret"),
        ("dags.gitSync.credentialsSecret", "Secret"),
        ("logs.persistence.existingClaim", "PersistentVolumeClaim"),
        ("dags.persistence.existingClaim", "PersistentVolumeClaim"),
        ("secret.*.secretName", "Secret"),
        ("registry.secretName", "Secret"),
    ],
}
# Values whose content is a YAML string of pod-spec fragments (the Airflow chart's extraEnvFrom).
CHART_YAML_STRINGS: dict[str, list[str]] = {"airflow": ["extraEnvFrom", "extraEnv", "*.extraEnvFrom"]}
# Objects a chart creates itself from values (so references to them are satisfied).
CHART_CREATES: dict[str, list[tuple[str, str]]] = {
    "airflow": [("extraSecrets", "Secret"), ("extraConfigMaps", "ConfigMap")],
}


def _walk_paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_paths(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_paths(v, f"{prefix}.{i}" if prefix else str(i))


def _get(values: dict[str, Any], path: str) -> Any:
    cur: Any = values
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def pod_refs(value: Any) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object a pod spec (or a fragment of one) refers to by name."""
    if isinstance(value, list):
        for item in value:
            yield from pod_refs(item)
        return
    if not isinstance(value, dict):
        return
    yield from _named_refs(value)
    for v in value.values():
        if isinstance(v, (dict, list)):
            yield from pod_refs(v)


def _named_refs(value: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of the objects one mapping of a pod spec refers to itself (not through its children)."""
    for key, kind, name_key in (
        ("secretRef", "Secret", "name"),
        ("configMapRef", "ConfigMap", "name"),
        ("secretKeyRef", "Secret", "name"),
        ("configMapKeyRef", "ConfigMap", "name"),
        ("persistentVolumeClaim", "PersistentVolumeClaim", "claimName"),
        ("secret", "Secret", "secretName"),
        ("configMap", "ConfigMap", "name"),
    ):
        ref = value.get(key)
        if isinstance(ref, dict) and isinstance(ref.get(name_key), str) and not ref.get("optional"):
            yield kind, ref[name_key]
    yield from _projected_refs(value)
    if isinstance(value.get("serviceAccountName"), str):
        yield "ServiceAccount", value["serviceAccountName"]
    for item in value.get("imagePullSecrets", []) if isinstance(value.get("imagePullSecrets"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            yield "Secret", item["name"]


def _projected_refs(value: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Projected volume sources use secret.name rather than secret.secretName."""
    for source in value.get("sources", []) if isinstance(value.get("sources"), list) else []:
        if isinstance(source, dict):
            for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                ref = source.get(key)
                if isinstance(ref, dict) and isinstance(ref.get("name"), str) and not ref.get("optional"):
                    yield kind, ref["name"]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in WORKLOAD_KINDS:
        return (spec.get("template") or {}).get("spec")
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return None


def inventory(run: ProgramRun) -> set[Ref]:
    """Every referable object the program creates (directly, or through a chart's values)."""
    have: set[Ref] = set()
    for reg in run.kubernetes_objects():
        obj = reg.manifest
        if obj.get("kind") in REFERABLE_KINDS:
            meta = obj["metadata"]
            have.add((obj["kind"], meta.get("namespace") or "default", meta["name"]))
    for reg in run.helm_releases():
        chart, _ = release_chart(reg)
        inputs = reveal(reg.inputs)
        ns = inputs.get("namespace") or "default"
        values = inputs.get("values") or {}
        for path, kind in CHART_CREATES.get(chart.name if chart else "", []):
            created = _get(values, path)
            if isinstance(created, dict):
                have.update((kind, ns, name) for name in created)
    return have


def reference_problems(run: ProgramRun) -> list[str]:
    have = inventory(run)
    problems = []

    def need(kind: str, ns: str, name: str, where: str) -> None:
        if kind == "ServiceAccount" and name == "default":
            return
        if (kind, ns, name) not in have:
            problems.append(f"{where} refers to {kind} {ns}/{name}, which the program does not create")

    for reg in run.kubernetes_objects():
        obj = reg.manifest
        spec = pod_spec(obj)
        if spec is None:
            continue
        ns = obj["metadata"].get("namespace") or "default"
        for kind, name in pod_refs(spec):
            need(kind, ns, name, _describe(reg))
    for reg in run.helm_releases():
        chart, _ = release_chart(reg)
        inputs = reveal(reg.inputs)
        ns = inputs.get("namespace") or "default"
        values = inputs.get("values") or {}
        where = f"Helm release {reg.name} values"
        for kind, name, path in _chart_value_refs(chart.name if chart else "", values):
            need(kind, ns, name, f"{where} {path}")
        for kind, name in pod_refs(values):
            need(kind, ns, name, where)
    return sorted(set(problems))


def _chart_value_refs(chart_name: str, values: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(kind, name, values path) of what a chart's values name: by the chart's reference paths, then inside the
    values that hold YAML of pod spec fragments."""
    for pattern, kind in CHART_REFERENCES.get(chart_name, []):
        if pattern.endswith("@if-not-create"):
            pattern = pattern.removesuffix("@if-not-create")
            parent = pattern.rsplit(".", 1)[0]
            if (_get(values, parent) or {}).get("create", True):
                continue
        for path, value in _walk_paths(values):
            if fnmatch.fnmatchcase(path, pattern) and isinstance(value, str) and value:
                yield kind, value, path
    for pattern in CHART_YAML_STRINGS.get(chart_name, []):
        for path, value in _walk_paths(values):
            if fnmatch.fnmatchcase(path, pattern) and isinstance(value, str) and value.strip():
                for kind, name in pod_refs(yaml.safe_load(value)):
                    yield kind, name, path


# --- routes ------------------------------------------------------------------------------------------
H2C = "kubernetes.io/h2c"
TRAEFIK_API = "traefik.io/v1alpha1"


@dataclass(frozen=True)
class Backend:
    """One Service port a route sends requests to, and the scheme it speaks there (None: HTTP/1.1)."""

    where: str
    namespace: str
    service: str
    port: str | int
    scheme: str | None


def _ingress_backends(reg: Registration) -> Iterator[Backend]:
    obj = reg.manifest
    spec, ns = obj.get("spec") or {}, obj["metadata"].get("namespace") or "default"
    backends = [spec.get("defaultBackend") or {}]
    backends += [
        p.get("backend") or {} for r in spec.get("rules") or [] for p in (r.get("http") or {}).get("paths", [])
    ]
    for backend in (b.get("service") for b in backends):
        if backend:
            port = backend.get("port") or {}
            yield Backend(_describe(reg), ns, backend["name"], port.get("name") or port.get("number", ""), None)


def _ingressroute_backends(reg: Registration) -> Iterator[Backend]:
    obj = reg.manifest
    ns = obj["metadata"].get("namespace") or "default"
    for route in (obj.get("spec") or {}).get("routes") or []:
        for svc in route.get("services") or []:
            if svc.get("kind", "Service") == "Service":
                where = _describe(reg)
                yield Backend(where, svc.get("namespace") or ns, svc["name"], svc.get("port", ""), svc.get("scheme"))


def route_backends(run: ProgramRun) -> list[Backend]:
    """Every Service port an Ingress or a Traefik IngressRoute of the run routes to."""
    out: list[Backend] = []
    for reg in run.kubernetes_objects():
        kind, api = reg.manifest.get("kind"), reg.manifest.get("apiVersion")
        if kind == "Ingress":
            out.extend(_ingress_backends(reg))
        elif kind == "IngressRoute" and api == TRAEFIK_API:
            out.extend(_ingressroute_backends(reg))
    return out


def _backend_problem(backend: Backend, services: dict[tuple[str, str], dict[str, Any]]) -> str | None:
    service = services.get((backend.namespace, backend.service))
    if service is None:
        return None  # a Service a chart creates: not known here
    ports = (service.get("spec") or {}).get("ports") or []
    found = [p for p in ports if backend.port in (p.get("name"), p.get("port"))]
    target = f"Service {backend.namespace}/{backend.service} port {backend.port!r}"
    if not found:
        return f"{backend.where} routes to {target}, which the Service does not have"
    h2c = found[0].get("appProtocol") == H2C
    if h2c != (backend.scheme == "h2c"):
        speaks = backend.scheme or "HTTP/1.1"
        return f"{backend.where} speaks {speaks} to {target}, whose appProtocol is {found[0].get('appProtocol')}"
    return None


def _target_port_problems(service: Registration, workloads: list[Registration]) -> Iterator[str]:
    """A named targetPort must be a container port of the pods the Service selects (when the run renders them)."""
    obj = service.manifest
    ns, selector = obj["metadata"].get("namespace") or "default", (obj.get("spec") or {}).get("selector")
    if not selector:
        return
    templates = [
        (w.manifest.get("spec") or {}).get("template") or {}
        for w in workloads
        if (w.manifest["metadata"].get("namespace") or "default") == ns
    ]
    selected = [t for t in templates if selector.items() <= ((t.get("metadata") or {}).get("labels") or {}).items()]
    for template in selected:
        names = {
            p.get("name") for c in (template.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []
        }
        for port in (obj.get("spec") or {}).get("ports") or []:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                yield f"{_describe(service)} targets port {port['targetPort']!r}, which its pods do not name"


def route_problems(run: ProgramRun) -> list[str]:
    """Every route reaches a port its Service has, in the protocol the port declares (appProtocol h2c: only a route
    that speaks h2c; no appProtocol: HTTP/1.1), and every named targetPort of a Service is a port of its pods."""
    objects = run.kubernetes_objects()
    services = [r for r in objects if r.manifest.get("kind") == "Service"]
    by_name = {
        (r.manifest["metadata"].get("namespace") or "default", r.manifest["metadata"]["name"]): r.manifest
        for r in services
    }
    problems = [p for b in route_backends(run) if (p := _backend_problem(b, by_name)) is not None]
    workloads = [r for r in objects if r.manifest.get("kind") in WORKLOAD_KINDS - {"Pod"}]
    for service in services:
        problems.extend(_target_port_problems(service, workloads))
    return sorted(set(problems))


# --- secrets -----------------------------------------------------------------------------------------
# Outputs that hold secrets (the engine marks them secret via additional_secret_outputs or the
# provider schema; mocks do not, so the program must wrap them itself and this list finds them).
SECRET_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "aws:iam/accessKey:AccessKey": ("secret", "sesSmtpPasswordV4"),
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
    "random:index/randomBytes:RandomBytes": ("base64", "hex"),
    "tls:index/privateKey:PrivateKey": ("privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"),
}
_MIN_SECRET_LEN = 8
# A user name stored in a Secret next to its password (`username`, `MLFLOW_TRACKING_USERNAME`, ...)
# is an identifier, not a credential: it is necessarily spelled elsewhere (database names, Helm
# values, ini files), so it is not searched for. The password beside it still is.
_USERNAME_KEY = re.compile(r"(^|_)user(name)?$", re.IGNORECASE)


def _secret_strings(run: ProgramRun) -> dict[str, str]:
    """Secret value -> where it comes from."""
    found: dict[str, str] = {}
    for reg in run.registrations:
        _collect_secrets(reg.inputs, f"secret input of {reg.name}", found)
        for fld in SECRET_OUTPUT_FIELDS.get(reg.type, ()):
            value = reg.outputs.get(fld)
            if isinstance(value, str) and len(value) >= _MIN_SECRET_LEN:
                found.setdefault(value, f"{reg.type}.{fld} of {reg.name}")
    for name, export in run.exports.items():
        _collect_secrets(export.value, f"export {name}", found)
    return found


def _collect_secrets(value: Any, origin: str, found: dict[str, str], inside: bool = False, key: str = "") -> None:
    """Into `found`: every long enough string inside a SecretValue of `value` (user names aside) -> `origin`."""
    if isinstance(value, SecretValue):
        _collect_secrets(value.value, origin, found, True, key)
    elif isinstance(value, dict):
        for k, v in value.items():
            _collect_secrets(v, origin, found, inside, str(k))
    elif isinstance(value, list):
        for v in value:
            _collect_secrets(v, origin, found, inside, key)
    elif inside and isinstance(value, str) and len(value) >= _MIN_SECRET_LEN and not _USERNAME_KEY.search(key):
        found.setdefault(value, origin)


def _plain_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string not inside a SecretValue, with its path."""
    if isinstance(value, SecretValue):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _plain_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _plain_strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def plaintext_secret_problems(run: ProgramRun) -> list[str]:
    secrets = _secret_strings(run)
    problems = []

    def scan(value: Any, where: str) -> None:
        for path, text in _plain_strings(value):
            for secret, origin in secrets.items():
                if secret in text:
                    problems.append(f"{where} {path} holds the {origin} in plaintext")

    for reg in run.registrations:
        scan(reg.inputs, f"{reg.type} {reg.name} input")
        if reg.registered_outputs:
            scan(reg.registered_outputs, f"component {reg.name} output")
    for name, export in run.exports.items():
        scan(export.value, f"export {name}")
    problems += _unwrapped_secret_data(run)
    return sorted(set(problems))


def _unwrapped_secret_data(run: ProgramRun) -> list[str]:
    """Every key of a Kubernetes Secret's data or stringData whose value is not a secret Output."""
    problems = []
    for reg in run.of_type("kubernetes:core/v1:Secret"):
        for field_name in ("data", "stringData"):
            content = reg.inputs.get(field_name)
            if isinstance(content, SecretValue) or not isinstance(content, dict):
                continue
            for key, value in content.items():
                if not isinstance(value, SecretValue):
                    problems.append(f"Secret {reg.name} {field_name}.{key} is not a secret Output")
    return problems


# --- credentials as files, read-only root filesystems ----------------------------------------------------------------
# Every credential reaches a container as a file of its mounted Secret (services/common/contract.py), never as an
# environment variable sourced from a Secret nor on its command line; every container's root filesystem is read-only.
# `credential_exposure_problems` and `writable_root_problems` check every pod template the program renders (Deployments,
# StatefulSets, DaemonSets, Jobs, CronJobs, Pods) and what the Helm releases' values make their charts render.
# Where a chart can only do otherwise, the exception is listed HERE, once, with its reason: (chart, values path
# pattern) -> reason. Nothing else is exempt.
ACCEPTED_SECRET_ENV: dict[tuple[str, str], str] = {
    ("mlflow", "backendStore.existingDatabaseSecret.name"): (
        "the MLflow chart (community-charts 1.11) builds the backend store URI from env vars with secretKeyRef; it has "
        "no file or _FILE option for the database password"
    ),
    ("mlflow", "auth.postgres.existingSecret.name"): "as backendStore: the chart passes the auth database's "
    "password only as a secretKeyRef env var",
    ("mlflow", "auth.existingAdminSecret.name"): "the chart hands the admin's credentials to its basic-auth init "
    "container only as secretKeyRef env vars",
    ("mlflow", "artifactRoot.s3.existingSecret.name"): "the chart maps the S3 key Secret only to "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY secretKeyRef env vars (no shared-credentials-file option)",
    ("airflow", "data.metadataSecretName"): "the official Airflow chart sets AIRFLOW__DATABASE__SQL_ALCHEMY_CONN "
    "from this Secret with secretKeyRef in every component; it offers no file mount for it",
    ("airflow", "fernetKeySecretName"): "the official chart sets AIRFLOW__CORE__FERNET_KEY only by secretKeyRef",
    ("airflow", "apiSecretKeySecretName"): "the official chart sets AIRFLOW__API__SECRET_KEY only by secretKeyRef",
    ("airflow", "jwtSecretName"): "the official chart sets AIRFLOW__API_AUTH__JWT_SECRET only by secretKeyRef",
    ("airflow", "secret.*.secretName"): "remote task logging needs its S3 connection as AIRFLOW_CONN_<ID>; the chart's "
    "`secret` list is the only way to give it to every component and task pod (the S3 key itself is a file)",
    ("kube-prometheus-stack", "grafana.admin.existingSecret"): "the Grafana chart sets GF_SECURITY_ADMIN_USER/"
    "PASSWORD from the admin Secret only by secretKeyRef",
}
ACCEPTED_WRITABLE_ROOT: dict[tuple[str, str], str] = {
    ("airflow", "*"): "the official Airflow chart's components and task pods write under /opt/airflow and $HOME "
    "(generated config, pid and log files, pip --user caches) at paths the chart does not make volumes; a read-only "
    "layout cannot be proven here without a cluster, so the chart's containers keep a writable root (Pod Security "
    "`restricted` still applies)",
}
# Helm values that make a chart source env vars from a Secret (beyond the env/envFrom fragments found anywhere).
CHART_SECRET_ENV: dict[str, list[str]] = {
    "mlflow": [
        "backendStore.existingDatabaseSecret.name",
        "auth.postgres.existingSecret.name",
        "auth.existingAdminSecret.name",
        "artifactRoot.s3.existingSecret.name",
        "extraSecretNamesForEnvFrom.*",
    ],
    "airflow": [
        "data.metadataSecretName",
        "data.resultBackendSecretName",
        "data.brokerUrlSecretName",
        "fernetKeySecretName",
        "apiSecretKeySecretName",
        "jwtSecretName",
        "webserverSecretKeySecretName",
        "secret.*.secretName",
    ],
    "kube-prometheus-stack": ["grafana.admin.existingSecret"],
}
# Helm values holding a container securityContext of the chart (merged over the chart's defaults).
CHART_CONTAINER_CONTEXTS: dict[str, list[str]] = {
    "mlflow": ["securityContext"],
    "airflow": ["securityContexts.containers", "dags.gitSync.securityContexts.container"],
    "loki": ["loki.containerSecurityContext"],
    "alloy": ["alloy.securityContext", "configReloader.securityContext"],
    "traefik": ["securityContext"],
    "cert-manager": [
        "containerSecurityContext",
        "webhook.containerSecurityContext",
        "cainjector.containerSecurityContext",
        "startupapicheck.containerSecurityContext",
    ],
    "kube-prometheus-stack": ["prometheusOperator.containerSecurityContext"],
}
# A credential on a command line: a password/token flag, a libpq password variable, a psql variable set to one, or
# a shell expansion of a variable named like one.
ARGV_CREDENTIAL = re.compile(
    r"--(password|passwd|token|secret|api-key)(?![-\w])"
    r"|\bPGPASSWORD="
    r"|-v\s*['\"]?\w*(password|token|secret)\w*="
    r"|\$\{?\w*(PASSWORD|TOKEN|SECRET)\w*\}?",
    re.IGNORECASE,
)


def _accepted(accepted: dict[tuple[str, str], str], chart: str, path: str) -> bool:
    return any(c == chart and fnmatch.fnmatchcase(path, pattern) for c, pattern in accepted)


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from (c for c in spec.get(key) or [] if isinstance(c, dict))


def container_credential_problems(container: dict[str, Any]) -> list[str]:
    """What one container takes from a Secret as environment, and the credentials on its command line."""
    name = container.get("name", "?")
    problems = []
    for env in container.get("env") or []:
        if isinstance(env, dict) and "secretKeyRef" in (env.get("valueFrom") or {}):
            ref = env["valueFrom"]["secretKeyRef"]
            problems.append(
                f"container {name}: env {env.get('name')} from Secret {ref.get('name')} (mount it as a file)"
            )
    for source in container.get("envFrom") or []:
        if isinstance(source, dict) and "secretRef" in source:
            problems.append(f"container {name}: envFrom Secret {source['secretRef'].get('name')} (mount it as files)")
    argv = " ".join(str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])])
    found = ARGV_CREDENTIAL.search(argv)
    if found:
        problems.append(f"container {name}: a credential on the command line ({found.group(0)!r})")
    return problems


def _secret_env_fragments(value: Any, prefix: str = "") -> Iterator[str]:
    """Values paths of env/envFrom fragments (in Helm values) that take a Secret."""
    for path, item in _walk_paths(value, prefix):
        if isinstance(item, dict) and "secretKeyRef" in item:
            yield path
        if isinstance(item, dict) and "secretRef" in item and "nvFrom" in path:
            yield path


def _release_credential_problems(reg: Registration) -> list[str]:
    chart, _ = release_chart(reg)
    if chart is None:
        return []
    values = reveal(reg.inputs).get("values") or {}
    paths: list[str] = list(_secret_env_fragments(values))
    for pattern in CHART_YAML_STRINGS.get(chart.name, []):
        for path, text in _walk_paths(values):
            if fnmatch.fnmatchcase(path, pattern) and isinstance(text, str) and text.strip():
                paths += _secret_env_fragments(yaml.safe_load(text), path)
    for pattern in CHART_SECRET_ENV.get(chart.name, []):
        paths += [p for p, v in _walk_paths(values) if fnmatch.fnmatchcase(p, pattern) and isinstance(v, str) and v]
    return [
        f"Helm release {reg.name} ({chart.name}): values.{path} makes the chart take a Secret as environment"
        for path in dict.fromkeys(paths)
        if not _accepted(ACCEPTED_SECRET_ENV, chart.name, path)
    ]


def credential_exposure_problems(run: ProgramRun) -> list[str]:
    """Every container of every pod template: no env var from a Secret, no credential on its command line; every Helm
    release: no values that make its chart do so, outside ACCEPTED_SECRET_ENV."""
    problems = []
    for reg in run.kubernetes_objects():
        spec = pod_spec(reg.manifest)
        for container in _containers(spec or {}):
            problems += [f"{_describe(reg)}: {p}" for p in container_credential_problems(container)]
    for reg in run.helm_releases():
        problems += _release_credential_problems(reg)
    return problems


def writable_root_problems(run: ProgramRun) -> list[str]:
    """Every container of every pod template has a read-only root filesystem; so has every container securityContext
    of the Helm charts (CHART_CONTAINER_CONTEXTS, over the chart's defaults), outside ACCEPTED_WRITABLE_ROOT."""
    problems = []
    for reg in run.kubernetes_objects():
        for container in _containers(pod_spec(reg.manifest) or {}):
            if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{_describe(reg)}: container {container.get('name')} has a writable root filesystem")
    for reg in run.helm_releases():
        chart, _ = release_chart(reg)
        if chart is None:
            continue
        merged = helm_merge(chart.default_values, reveal(reg.inputs).get("values") or {})
        for path in CHART_CONTAINER_CONTEXTS.get(chart.name, []):
            if _accepted(ACCEPTED_WRITABLE_ROOT, chart.name, path):
                continue
            if (_get(merged, path) or {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"Helm release {reg.name} ({chart.name}): values.{path} has no readOnlyRootFilesystem")
    return problems


# --- component structure ---------------------------------------------------------------------------
def structure_problems(run: ProgramRun) -> list[str]:
    problems = []
    stack_urns = {r.parent for r in run.registrations if r.parent and r.parent.split("::")[-2] == "pulumi:pulumi:Stack"}
    for reg in run.registrations:
        is_provider = reg.type.startswith("pulumi:providers:")
        if reg.parent in stack_urns and reg.custom and not is_provider:
            problems.append(
                f"{reg.type} {reg.name} is not a child of a component (missing ResourceOptions(parent=self))"
            )
        if not reg.custom and not reg.registered_outputs:
            problems.append(f"component {reg.type} {reg.name} registers no outputs")
    return problems


def all_problems(run: ProgramRun, min_version: str) -> dict[str, list[str]]:
    from harness import order  # it reads pod references through this module

    versions = sorted({min_version, LATEST_KUBERNETES}, key=lambda v: tuple(int(x) for x in v.split(".")))
    return {
        "kubernetes schemas": kubernetes_schema_problems(run, versions),
        "helm values": helm_values_problems(run),
        "references": reference_problems(run),
        "routes": route_problems(run),
        "plaintext secrets": plaintext_secret_problems(run),
        "credentials in env or argv": credential_exposure_problems(run),
        "writable root filesystems": writable_root_problems(run),
        "structure": structure_problems(run),
        "apply order": order.problems(run),
    }
