"""Custom resources validated strictly against their CustomResourceDefinitions, as the API server would.

The CRDs are the ones the platform's charts install, kept unchanged in ../shared/crds (see
../shared/README.md). `CrdIndex` finds the CRD of an object's API group and kind, picks the served
version named by its apiVersion and validates the object against that version's `openAPIV3Schema`,
turned into a JSON Schema with the structural-schema semantics of the API server:

- an object schema without `x-kubernetes-preserve-unknown-fields: true` and without
  `additionalProperties` is closed: an unknown field is rejected (strict field validation);
- `x-kubernetes-int-or-string: true` accepts an integer or a string;
- `x-kubernetes-embedded-resource: true` is an object with apiVersion and kind (both required) and
  metadata;
- `nullable: true` also accepts null; `exclusiveMinimum`/`exclusiveMaximum` are OpenAPI 3.0 booleans;
- `x-kubernetes-list-type: set` items are unique, `map` items are unique by their
  `x-kubernetes-list-map-keys`;
- the formats the API server checks on strings that these CRDs use (`byte`, `date-time`) are checked;
- `metadata` at the top level (and in embedded resources) is Kubernetes' own ObjectMeta, closed, with
  name, namespace, label and annotation syntax checked.

Not evaluated: the CEL rules of `x-kubernetes-validations` (a few CRDs carry some; the names of the
schemas that do are in `CrdIndex.cel_rules`).

A missing CRD folder raises; an object whose CRD or version is unknown is a problem, never skipped.
Parsed CRDs and compiled validators are cached: the YAML of a group is read only when an object of
that group is validated (files named `<group>_*` first, every other file only if needed).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions, latest_version

# Kubernetes name syntax (apimachinery validation).
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
QUALIFIED_NAME = rf"({DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?"
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?"

_COPIED = (
    "type",
    "required",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "format",
)
_JUNCTORS = ("allOf", "anyOf", "oneOf")
_SHOWN = 12  # allowed field names listed in an unknown-field message
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class CrdFolderMissing(FileNotFoundError):
    pass


def _yaml_loader() -> type[yaml.SafeLoader]:
    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):
        pass

    # the prometheus-operator files use the `=` scalar (tag:yaml.org,2002:value)
    Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    return Loader


_LOADER = _yaml_loader()


@dataclass(frozen=True)
class Crd:
    group: str
    kind: str
    plural: str
    scope: str
    versions: dict[str, dict[str, Any]]
    source: str  # path under the CRD folder

    @property
    def served(self) -> list[str]:
        return [name for name, v in self.versions.items() if v.get("served")]


# --- ObjectMeta ------------------------------------------------------------------------------------
_DEFS_PREFIX = "/api/_definitions.json#/$defs/"


@functools.cache
def object_meta_schema() -> dict[str, Any]:
    """Kubernetes' ObjectMeta (kubernetes-validate's strict schema of the newest version, references
    inlined), with the name syntax the API server checks on every object."""
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{latest_version()}-local-strict"
    defs = json.loads((folder / "_definitions.json").read_text())["$defs"]

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX):
                return inline(defs[ref.removeprefix(_DEFS_PREFIX)])
            return {k: inline(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    meta: dict[str, Any] = inline(defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"])
    props = dict(meta["properties"])
    props["name"] = {"type": "string", "maxLength": 253, "pattern": f"^{DNS_SUBDOMAIN}$"}
    props["namespace"] = {"type": "string", "maxLength": 63, "pattern": f"^{DNS_LABEL}$"}
    props["labels"] = {
        "type": "object",
        "propertyNames": {"maxLength": 317, "pattern": f"^{QUALIFIED_NAME}$"},
        "additionalProperties": {"type": "string", "maxLength": 63, "pattern": f"^{LABEL_VALUE}$"},
    }
    props["annotations"] = {
        "type": "object",
        "propertyNames": {"maxLength": 317, "pattern": f"^{QUALIFIED_NAME}$"},
        "additionalProperties": {"type": "string"},
    }
    return {**meta, "type": "object", "properties": props, "additionalProperties": False}


# --- structural schema -> JSON Schema --------------------------------------------------------------
def to_json_schema(node: dict[str, Any], *, in_junctor: bool = False) -> dict[str, Any]:
    """One node of a CRD's structural `openAPIV3Schema` as JSON Schema (draft 2020-12).

    Inside allOf/anyOf/oneOf/not (value validations only in a structural schema) objects are not
    closed: which fields exist is decided by the node that holds the junctor."""
    out: dict[str, Any] = {k: node[k] for k in _COPIED if k in node}
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    for bound, key in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(key) is True and bound in node:
            out[key] = out.pop(bound)
    properties = _properties(node, out, in_junctor)
    _additional_properties(node, out, properties, preserve=preserve, in_junctor=in_junctor)
    if isinstance(node.get("items"), dict):
        out["items"] = to_json_schema(node["items"], in_junctor=in_junctor)
    _junctors(node, out)
    _list_type_and_nullable(node, out)
    return out


def _properties(node: dict[str, Any], out: dict[str, Any], in_junctor: bool) -> dict[str, Any]:
    """Into `out`: the node's properties (an embedded resource's apiVersion, kind and metadata too); them."""
    properties = {k: to_json_schema(v, in_junctor=in_junctor) for k, v in (node.get("properties") or {}).items()}
    if node.get("x-kubernetes-embedded-resource"):
        out["type"] = "object"
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = object_meta_schema()
        out["required"] = sorted({*out.get("required", []), "apiVersion", "kind"})
    if properties:
        out["properties"] = properties
    return properties


def _additional_properties(
    node: dict[str, Any], out: dict[str, Any], properties: dict[str, Any], *, preserve: bool, in_junctor: bool
) -> None:
    """Into `out`: the node's additionalProperties; an object is closed unless it preserves unknown fields or sits
    inside a junctor."""
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = to_json_schema(additional, in_junctor=in_junctor)
    elif isinstance(additional, bool):
        out["additionalProperties"] = additional
    elif not preserve and not in_junctor and (node.get("type") == "object" or properties):
        out["additionalProperties"] = False


def _junctors(node: dict[str, Any], out: dict[str, Any]) -> None:
    """Into `out`: allOf/anyOf/oneOf and not, their schemas converted as inside a junctor."""
    for junctor in _JUNCTORS:
        if junctor == "anyOf" and node.get("x-kubernetes-int-or-string") and _only_types(node[junctor]):
            continue  # the int-or-string type above says the same, with one message
        if junctor in node:
            out[junctor] = [to_json_schema(s, in_junctor=True) for s in node[junctor]]
    if isinstance(node.get("not"), dict):
        out["not"] = to_json_schema(node["not"], in_junctor=True)


def _list_type_and_nullable(node: dict[str, Any], out: dict[str, Any]) -> None:
    """Into `out`: x-kubernetes-list-type (set: unique items; map: its keys) and nullable (null allowed)."""
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map" and node.get("x-kubernetes-list-map-keys"):
        out["listMapKeys"] = list(node["x-kubernetes-list-map-keys"])
    if node.get("nullable"):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]


def _only_types(schemas: list[dict[str, Any]]) -> bool:
    return all(set(sub) == {"type"} for sub in schemas)


def _list_map_keys(
    validator: jsonschema.protocols.Validator, keys: list[str], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """`x-kubernetes-list-type: map`: no two items share the values of the map keys."""
    if not isinstance(instance, list):
        return
    seen: set[str] = set()
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        values = {k: item.get(k) for k in keys}
        if repr(values) in seen:
            yield jsonschema.ValidationError(f"duplicate entry {values} in a list keyed by {keys}", path=[index])
        seen.add(repr(values))


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("byte", raises=(binascii.Error, ValueError))
def _is_base64(value: object) -> bool:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)
    return True


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"listMapKeys": _list_map_keys})


@dataclass
class ResourceValidator:
    crd: Crd
    version: str
    validator: jsonschema.protocols.Validator

    def problems(self, obj: dict[str, Any]) -> list[str]:
        """Each problem as `<field path>: <what is wrong>`."""
        found: list[str] = []
        for error in self.validator.iter_errors(obj):
            found.extend(_explain(error))
        meta = obj.get("metadata") or {}
        if self.crd.scope == "Cluster" and isinstance(meta, dict) and meta.get("namespace"):
            found.append(f"metadata.namespace: {self.crd.kind} is cluster-scoped and takes no namespace")
        return sorted(set(found))


def field_path(parts: Iterable[Any], *more: Any) -> str:
    text = ""
    for part in [*parts, *more]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _explain(error: jsonschema.ValidationError) -> list[str]:
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and error.validator_value is False and isinstance(instance, dict):
        allowed = sorted((error.schema.get("properties") or {}).keys())
        shown = ", ".join(allowed[:_SHOWN]) + (f", ... ({len(allowed) - _SHOWN} more)" if len(allowed) > _SHOWN else "")
        hint = f" (allowed here: {shown})" if allowed else " (no field is allowed here)"
        extra = sorted(set(instance) - set(allowed))
        return [f"{field_path(path, key)}: unknown field{hint}" for key in extra]
    if error.validator == "required" and isinstance(instance, dict):
        return [
            f"{field_path(path, key)}: required field missing" for key in error.validator_value if key not in instance
        ]
    if error.validator == "enum":
        allowed = [v for v in error.validator_value if v is not None]
        return [f"{field_path(path)}: {instance!r} is not one of {allowed}"]
    message = error.message
    if "propertyNames" in error.relative_schema_path:
        return [f"{field_path(path)}: key {message[:300]}"]
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        message += f" ({field_path(list(best.relative_path)) + ': ' if best.relative_path else ''}{best.message})"
    return [f"{field_path(path)}: {message[:300]}"]


# --- the index ---------------------------------------------------------------------------------------
@dataclass
class CrdIndex:
    """The CRDs of one folder, parsed on demand, with their compiled validators."""

    folder: Path
    _unparsed: list[Path] = field(default_factory=list)
    _crds: dict[tuple[str, str], Crd] = field(default_factory=dict)
    _validators: dict[tuple[str, str, str], ResourceValidator] = field(default_factory=dict)
    cel_rules: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.folder.is_dir():
            raise CrdFolderMissing(
                f"no CRD folder {self.folder}: the shared material (../shared beside the clone, "
                "see ../shared/README.md) must be present to validate custom resources"
            )
        self._unparsed = sorted(p for p in self.folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())

    def _parse(self, path: Path) -> None:
        self._unparsed.remove(path)
        for doc in yaml.load_all(path.read_text(), Loader=_LOADER):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            crd = Crd(
                group=spec["group"],
                kind=spec["names"]["kind"],
                plural=spec["names"]["plural"],
                scope=spec.get("scope", "Namespaced"),
                versions={v["name"]: v for v in spec["versions"]},
                source=str(path.relative_to(self.folder)),
            )
            self._crds[(crd.group, crd.kind)] = crd

    def crd(self, group: str, kind: str) -> Crd | None:
        if (group, kind) not in self._crds:
            likely = [p for p in self._unparsed if p.name.startswith(f"{group}_")]
            for path in likely + [p for p in self._unparsed if p not in likely]:
                self._parse(path)
                if (group, kind) in self._crds:
                    break
        return self._crds.get((group, kind))

    def validator(self, api_version: str, kind: str) -> ResourceValidator:
        """The compiled validator of `kind` at `api_version`; LookupError naming what is missing."""
        group, _, version = api_version.rpartition("/")
        key = (group, version, kind)
        if key in self._validators:
            return self._validators[key]
        crd = self.crd(group, kind)
        if crd is None:
            raise LookupError(
                f"no CustomResourceDefinition for {kind} in API group {group!r} under {self.folder} "
                "(add the CRD of the chart that installs it to ../shared/crds)"
            )
        if version not in crd.served:
            raise LookupError(f"{api_version} is not a served version of {kind} ({crd.source} serves {crd.served})")
        raw = crd.versions[version]["schema"]["openAPIV3Schema"]
        schema = to_json_schema(raw)
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"const": api_version}
        props["kind"] = {"const": kind}
        props["metadata"] = object_meta_schema()
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        self.cel_rules[f"{crd.source} {version}"] = list(_cel_rules(raw))
        compiled = ResourceValidator(crd, version, _Validator(schema, format_checker=_FORMATS))
        self._validators[key] = compiled
        return compiled

    def problems(self, obj: dict[str, Any]) -> list[str]:
        """The object's problems against its CRD (`<field path>: <what>`), or the missing CRD."""
        try:
            validator = self.validator(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        except LookupError as exc:
            return [str(exc)]
        return validator.problems(obj)


def _cel_rules(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations") or []:
            yield f"{path or '(root)'}: {rule.get('rule')}"
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    yield from _cel_rules(sub, f"{path}.{name}" if path else name)
            elif key in ("items", "additionalProperties"):
                yield from _cel_rules(value, f"{path}[*]")


@functools.lru_cache(maxsize=4)
def load_index(folder: Path) -> CrdIndex:
    return CrdIndex(folder)


# --- which objects are custom resources ----------------------------------------------------------------
@functools.cache
def _builtin_schemas() -> frozenset[str]:
    """Schema file stems of kubernetes-validate over all the Kubernetes versions it ships."""
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return frozenset(p.stem for v in all_versions() for p in (base / f"v{v}-local").glob("*.json"))


def is_custom_resource(api_version: str, kind: str) -> bool:
    """Built-in API groups are dotless (core, apps, batch, policy, autoscaling) or under k8s.io and
    known to kubernetes-validate; every other group is served by a CRD (Gateway API, under k8s.io,
    included)."""
    group, _, version = api_version.rpartition("/")
    if "." not in group:
        return False
    if group.endswith(".k8s.io"):
        return f"{kind.lower()}-{group.split('.')[0]}-{version}" not in _builtin_schemas()
    return True
