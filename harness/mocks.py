"""Pulumi mocks that return realistic computed values for every resource type the program uses.

Without a Pulumi engine or cloud, `PlatformMocks.new_resource` plays the provider: it echoes the
inputs and adds what the provider would compute (ARNs, ids, endpoints, generated names, random
results), deterministically (same program, same values), so outputs that flow from one resource
into another (a bucket ARN into a policy, an RDS address into a ConfigMap) look like the real thing.
`RecordingMonitor` keeps every registration with its parent, options and raw inputs (secret
markers kept), which the checks in `harness.checks` and `make preview` read.

An invoke the mocks do not know raises, naming its token, so a new data source cannot slip in
unmocked.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
SIG_KEY = "4dabf18193072939515e22adb298388d"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@dataclass(frozen=True)
class SecretValue:
    """A value the program marked secret. Checks look for these; preview prints `[secret]`."""

    value: Any

    def __repr__(self) -> str:
        return "SecretValue([secret])"


def decode(value: Any) -> Any:
    """Turn Pulumi's wire encoding (as plain JSON) into Python values, keeping secretness."""
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            return SecretValue(decode(value.get("value")))
        if sig == RESOURCE_SIG:
            return value.get("urn")
        if sig == OUTPUT_SIG:
            inner = decode(value.get("value")) if "value" in value else None
            return SecretValue(inner) if value.get("secret") else inner
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def reveal(value: Any) -> Any:
    """`decode`d value with every secret unwrapped (for computing mock outputs)."""
    if isinstance(value, SecretValue):
        return reveal(value.value)
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return reveal(value.get("value"))
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def contains_secret(value: Any) -> bool:
    if isinstance(value, SecretValue):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


def redact(value: Any) -> Any:
    """Replace secret values with the string "[secret]"."""
    if isinstance(value, SecretValue):
        return "[secret]"
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _digest(*parts: str, length: int = 16) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _upper_id(prefix: str, name: str, length: int = 16) -> str:
    raw = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    return prefix + raw[:length]


def _physical_name(name: str, suffix_len: int = 7) -> str:
    """Pulumi auto-naming: logical name + random suffix (deterministic here)."""
    return f"{name}-{_digest(name, length=suffix_len)}"


# IAM kind -> (ARN resource type, id output, id prefix)
_IAM_NAMED = {
    "User": ("user", "uniqueId", "AIDA"),
    "Policy": ("policy", "policyId", "ANPA"),
    "Role": ("role", "policyId", "ANPA"),
}


class PlatformMocks(pulumi.runtime.Mocks):
    """Provider stand-in for aws, kubernetes, random, tls and time resources."""

    def __init__(self, region: str = REGION) -> None:
        self.region = region
        # (type, name) -> the resource's `replacement_trigger` (set by `RecordingMonitor`): a resource
        # replaced because its trigger changed is a new physical resource with new computed values
        # (an IAM access key gets a new id and secret), as with the real provider.
        self.replacement_triggers: dict[tuple[str, str], str] = {}

    # -- resources --------------------------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = reveal(args.inputs)
        typ, name = args.typ, args.name
        pkg = typ.split(":")[0]
        if pkg == "kubernetes" and args.resource_id and typ == "kubernetes:core/v1:Secret":
            return self._read_tls_secret(args.resource_id)
        by_package = {"aws": self._aws, "kubernetes": self._kubernetes, "random": self._random, "tls": self._tls}
        if pkg in by_package:
            return by_package[pkg](typ, name, inputs)
        if pkg == "pulumi" and typ.startswith("pulumi:providers:"):
            return f"{name}-provider-id", dict(inputs)
        return f"{name}-id", dict(inputs)  # time (pulumiverse_time) and the rest: their inputs

    def _arn(self, service: str, resource: str, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"

    def _aws(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        module, _, kind = typ.split(":", 1)[1].partition("/")
        kind = kind.split(":")[-1]
        by_type = {
            "aws:s3/bucket:Bucket": self._aws_bucket,
            "aws:iam/user:User": self._aws_iam_named,
            "aws:iam/accessKey:AccessKey": self._aws_access_key,
            "aws:iam/policy:Policy": self._aws_iam_named,
            "aws:iam/role:Role": self._aws_iam_named,
            "aws:iam/userPolicy:UserPolicy": self._aws_user_policy,
            "aws:iam/userPolicyAttachment:UserPolicyAttachment": self._aws_user_policy_attachment,
            "aws:kms/key:Key": self._aws_kms_key,
            "aws:rds/instance:Instance": self._aws_rds_instance,
            "aws:rds/subnetGroup:SubnetGroup": self._aws_rds_group,
            "aws:rds/parameterGroup:ParameterGroup": self._aws_rds_group,
            "aws:ec2/securityGroup:SecurityGroup": self._aws_security_group,
        }
        if typ in by_type:
            return by_type[typ](typ, name, inputs)
        if module == "s3":
            return f"{inputs.get('bucket', name)}", out
        if module == "ec2" and kind.startswith("SecurityGroup"):
            rule = f"sgr-{_digest(name, length=17)}"
            out.update(securityGroupRuleId=rule)
            return rule, out
        ident = inputs.get("name") or _physical_name(name)
        out.setdefault("arn", self._arn(module, f"{kind.lower()}/{ident}"))
        return ident, out

    def _aws_bucket(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        bucket = inputs.get("bucket") or (inputs.get("bucketPrefix") or f"{name}-") + _digest(name, length=12)
        out.update(
            bucket=bucket,
            arn=f"arn:aws:s3:::{bucket}",
            bucketDomainName=f"{bucket}.s3.amazonaws.com",
            bucketRegionalDomainName=f"{bucket}.s3.{self.region}.amazonaws.com",
            region=self.region,
            hostedZoneId="Z1BKCTXD74EZPE",
        )
        return bucket, out

    def _aws_access_key(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        trigger = self.replacement_triggers.get((typ, name))
        instance = name if trigger is None else f"{name}@{trigger}"
        key_id = _upper_id("AKIA", instance)
        secret = base64.b64encode(hashlib.sha256(("secret/" + instance).encode()).digest()).decode()[:40]
        out.update(id=key_id, secret=secret, status=inputs.get("status", "Active"), createDate="2026-11-23T00:00:00Z")
        return key_id, out

    def _aws_iam_named(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """An IAM user, policy or role: named after its input (or its logical name), with an ARN and an id."""
        out = dict(inputs)
        resource, id_key, id_prefix = _IAM_NAMED[typ.rsplit(":", 1)[-1]]
        iname = inputs.get("name") or _physical_name(name)
        out.update(
            {
                "name": iname,
                "arn": self._arn("iam", f"{resource}{inputs.get('path', '/')}{iname}", False),
                id_key: _upper_id(id_prefix, iname),
            }
        )
        return iname, out

    def _aws_user_policy(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        return f"{inputs.get('user')}:{inputs.get('name') or name}", out

    def _aws_user_policy_attachment(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        return f"{inputs.get('user')}-{_digest(name)}", out

    def _aws_kms_key(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        key_id = "-".join(
            [_digest(name, length=8)]
            + [_digest(name, salt, length=n) for salt, n in (("a", 4), ("b", 4), ("c", 4), ("d", 12))]
        )
        out.update(keyId=key_id, arn=self._arn("kms", f"key/{key_id}"))
        return key_id, out

    def _aws_rds_instance(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        ident = inputs.get("identifier") or _physical_name(name)
        address = f"{ident}.c{_digest(name, length=10)}.{self.region}.rds.amazonaws.com"
        port = inputs.get("port", 5432)
        out.update(
            identifier=ident,
            address=address,
            port=port,
            endpoint=f"{address}:{port}",
            arn=self._arn("rds", f"db:{ident}"),
            resourceId=_upper_id("db-", ident, 26),
            hostedZoneId="Z29XKXDKYMONMX",
            status="available",
        )
        return ident, out

    def _aws_rds_group(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        kind = typ.rsplit(":", 1)[-1]
        gname = inputs.get("name") or _physical_name(name)
        res = "subgrp" if kind == "SubnetGroup" else "pg"
        out.update(name=gname, arn=self._arn("rds", f"{res}:{gname}"))
        return gname, out

    def _aws_security_group(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        sg = f"sg-{_digest(name, length=17)}"
        out.update(
            id=sg,
            arn=self._arn("ec2", f"security-group/{sg}"),
            ownerId=ACCOUNT_ID,
            name=inputs.get("name") or _physical_name(name),
        )
        return sg, out

    def _kubernetes(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        if typ.startswith("kubernetes:helm.sh/") and typ.endswith(":Release"):
            rname = inputs.get("name") or _physical_name(name, 8)
            ns = inputs.get("namespace") or "default"
            out.update(
                name=rname,
                status={
                    "name": rname,
                    "namespace": ns,
                    "chart": inputs.get("chart"),
                    "version": inputs.get("version"),
                    "appVersion": "",
                    "revision": 1,
                    "status": "deployed",
                },
            )
            return f"{ns}/{rname}", out
        metadata = dict(inputs.get("metadata") or {})
        if not metadata.get("name"):
            metadata["name"] = _physical_name(name, 8)
        metadata.setdefault(
            "uid",
            f"{_digest(name, length=8)}-{_digest(name, 'u', length=4)}-4{_digest(name, 'v', length=3)}"
            f"-8{_digest(name, 'w', length=3)}-{_digest(name, 'x', length=12)}",
        )
        metadata.setdefault("resourceVersion", "1")
        out["metadata"] = metadata
        kind = typ.rsplit(":", 1)[-1]
        if kind == "Service":
            spec = dict(out.get("spec") or {})
            spec.setdefault(
                "clusterIP",
                f"10.96.{int(_digest(name, length=2), 16)}.{int(_digest(name, 'ip', length=2), 16) % 250 + 2}",
            )
            out["spec"] = spec
        ns = metadata.get("namespace")
        ident = f"{ns}/{metadata['name']}" if ns else metadata["name"]
        return ident, out

    def _read_tls_secret(self, resource_id: str) -> tuple[str, dict[str, Any]]:
        """`Secret.get` of a certificate Secret written by cert-manager (public parts only)."""
        ns, _, name = resource_id.partition("/")
        body = base64.b64encode(hashlib.sha256(resource_id.encode()).digest() * 8).decode()
        pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
        encoded = base64.b64encode(pem.encode()).decode()
        return resource_id, {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {"ca.crt": encoded, "tls.crt": encoded},
        }

    def _random(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        # new keepers replace the resource: a new physical value, as with the real provider
        keepers = inputs.get("keepers")
        instance = name if not keepers else f"{name}@{json.dumps(keepers, sort_keys=True)}"
        seed = hashlib.sha256(("random/" + instance).encode()).digest() * 4
        if typ in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
            length = int(inputs.get("length", 16))
            alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
            result = "".join(alphabet[b % len(alphabet)] for b in seed[:length])
            out.update(result=result)
            if typ.endswith("RandomPassword"):
                out.update(bcryptHash="$2a$10$" + base64.b64encode(seed[:30]).decode()[:53])
            return "none", out
        if typ == "random:index/randomBytes:RandomBytes":
            n = int(inputs.get("length", 32))
            out.update(base64=base64.b64encode(seed[:n]).decode(), hex=seed[:n].hex())
            return "none", out
        if typ == "random:index/randomId:RandomId":
            n = int(inputs.get("byteLength", 8))
            raw = seed[:n]
            out.update(
                hex=raw.hex(),
                b64Std=base64.b64encode(raw).decode(),
                b64Url=base64.urlsafe_b64encode(raw).decode().rstrip("="),
                dec=str(int.from_bytes(raw, "big")),
            )
            return out["b64Url"], out
        if typ == "random:index/randomPet:RandomPet":
            out.update(id=f"{name}-pet")
            return f"{name}-pet", out
        return f"{name}-id", out

    def _tls(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = dict(inputs)
        body = base64.b64encode(hashlib.sha256(name.encode()).digest() * 8).decode()
        if typ == "tls:index/privateKey:PrivateKey":
            out.update(
                privateKeyPem=f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n",
                publicKeyPem=f"-----BEGIN PUBLIC KEY-----\n{body[:64]}\n-----END PUBLIC KEY-----\n",
                publicKeyOpenssh=f"ssh-ed25519 {body[:68]}",
            )
        else:
            out.update(certPem=f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
        return _digest(name), out

    # -- invokes ----------------------------------------------------------------------------------
    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/deployer",
                "userId": "AIDADEPLOYER",
                "id": ACCOUNT_ID,
            }, None
        if token == "aws:index/getRegion:getRegion":
            return {
                "name": self.region,
                "region": self.region,
                "id": self.region,
                "endpoint": f"ec2.{self.region}.amazonaws.com",
                "description": "Europe (Ireland)",
            }, None
        if token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "id": "aws",
                "reverseDnsPrefix": "com.amazonaws",
            }, None
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            raise NotImplementedError(
                "aws:iam/getPolicyDocument: build policy JSON in code so it can be tested in moto"
            )
        raise NotImplementedError(f"the harness mocks do not implement the invoke {token}; add it to harness/mocks.py")


@dataclass
class Registration:
    """One resource the program registered, as the engine would see it."""

    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    id: str | None
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    provider: str
    additional_secret_outputs: list[str]
    delete_before_replace: bool
    replace_on_changes: list[str]
    ignore_changes: list[str]
    registered_outputs: dict[str, Any] | None = None
    replacement_trigger: Any = None
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Input property -> the resources whose Outputs it takes (a subset of `dependencies`): what makes the engine
    replace this resource when one of those is replaced (e.g. `metadata` on the Namespace whose name it takes)."""

    @property
    def is_kubernetes_object(self) -> bool:
        return (
            self.type.startswith("kubernetes:")
            and "helm.sh" not in self.type
            and not self.type.startswith("kubernetes:yaml")
            and "/v" in self.type
        )

    @property
    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object this registration creates (inputs + generated name), secrets revealed."""
        obj = reveal(self.inputs)
        obj = {k: v for k, v in obj.items() if not k.startswith("__")}
        meta = dict(obj.get("metadata") or {})
        out_meta = reveal(self.outputs.get("metadata") or {})
        if not meta.get("name") and out_meta.get("name"):
            meta["name"] = out_meta["name"]
        obj["metadata"] = meta
        return obj


@dataclass
class RecordingMonitor(MockMonitor):
    """MockMonitor that records each registration with its parent and options."""

    registrations: dict[str, Registration] = field(default_factory=dict)

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations = {}

    def RegisterResource(self, request: Any) -> Any:
        trigger = (
            decode(json_format.MessageToDict(request.replacement_trigger))
            if request.HasField("replacement_trigger")
            else None
        )
        if trigger is not None and isinstance(self.mocks, PlatformMocks):
            self.mocks.replacement_triggers[(request.type, request.name)] = json.dumps(reveal(trigger), sort_keys=True)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw_inputs = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
        urn = response.urn
        state = self.resources.get(urn)
        self.registrations[urn] = Registration(
            type=request.type,
            name=request.name,
            urn=urn,
            parent=request.parent or None,
            custom=bool(request.custom),
            inputs=decode(raw_inputs),
            outputs=dict(state.state) if state else {},
            id=state.id if state else None,
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            dependencies=list(request.dependencies),
            provider=request.provider,
            additional_secret_outputs=list(request.additionalSecretOutputs),
            delete_before_replace=bool(request.deleteBeforeReplace),
            replace_on_changes=list(request.replaceOnChanges),
            ignore_changes=list(request.ignoreChanges),
            replacement_trigger=trigger,
            property_dependencies={
                key: list(deps.urns) for key, deps in request.propertyDependencies.items() if deps.urns
            },
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        reg = self.registrations.get(request.urn)
        if reg is not None:
            reg.registered_outputs = decode(
                json_format.MessageToDict(request.outputs, preserving_proto_field_name=True)
            )
        return super().RegisterResourceOutputs(request)
