"""Evaluate the policies exactly as the Pulumi CLI's analyzer does, without the CLI.

The CLI sends each resource to the pack as an `AnalyzeRequest` (properties as a protobuf `Struct`,
secrets and unknowns in Pulumi's wire encoding) and the whole stack as an `AnalyzeStackRequest`.
`pulumi_policy` turns those into `ResourceValidationArgs` / `StackValidationArgs`: properties go
through `MessageToDict` (every number becomes a float), `deserialize_properties` (secrets
unwrapped; with the pack's `policy.common.install_secret_marks`, secret strings arrive as `SecretText`)
and `unknown_checking_proxy` (Mappings and Sequences that raise on unknown values).

`resource_args` / `stack_args` build the args that way, for calling one policy's `validate`;
`analyze` drives the SDK's own analyzer servicer (the object `PolicyPack` serves over gRPC) with
proto requests, so enforcement levels and the SDK's handling of unknowns are the real ones.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy.common import deserialize_properties
from policy.policies import PACK_NAME, POLICIES

UNKNOWN = UNKNOWN_STRING_VALUE  # what a not-yet-known value looks like during preview


def secret(value: Any) -> dict[str, Any]:
    """A property value marked secret, in Pulumi's wire encoding."""
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


@dataclass
class Resource:
    """One resource as the engine hands it to a policy pack."""

    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""
    parent: str | None = None
    dependencies: Sequence[str] = ()
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    provider: Resource | None = None
    protect: bool = False

    def __post_init__(self) -> None:
        if not self.urn:
            self.urn = f"urn:pulumi:test::mlops-platform::{self.type}::{self.name}"


@dataclass(frozen=True)
class Violation:
    policy: str
    message: str
    urn: str | None = None
    enforcement: str = "mandatory"


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(props))
    return s


def _wire(props: Mapping[str, Any]) -> Any:
    """Properties after the gRPC round trip, as `pulumi_policy` sees them."""
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(to_struct(props))))


def _options(r: Resource) -> PolicyResourceOptions:
    return PolicyResourceOptions(r.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], r.parent)


def _provider(r: Resource) -> PolicyProviderResource | None:
    if r.provider is None:
        return None
    return PolicyProviderResource(r.provider.type, _wire(r.provider.props), r.provider.urn, r.provider.name)


def resource_args(
    r: Resource, config: Mapping[str, Any] | None = None, stack_tags: Mapping[str, str] | None = None
) -> ResourceValidationArgs:
    return ResourceValidationArgs(r.type, _wire(r.props), r.urn, r.name, _options(r), _provider(r), config, stack_tags)


def stack_args(resources: Iterable[Resource], config: Mapping[str, Any] | None = None) -> StackValidationArgs:
    items = list(resources)
    built = {
        r.urn: PolicyResource(r.type, _wire(r.props), r.urn, r.name, _options(r), _provider(r), None, [], {})
        for r in items
    }
    for r in items:
        pr = built[r.urn]
        if r.parent in built:
            pr.parent = built[r.parent]
        pr.dependencies.extend(built[d] for d in r.dependencies if d in built)
        for key, urns in r.property_dependencies.items():
            pr.property_dependencies[key] = [built[u] for u in urns if u in built]
    return StackValidationArgs(list(built.values()), config)


def _run(result: Any) -> None:
    if inspect.isawaitable(result):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(result)
        finally:
            loop.close()


def check(
    policy: Policy, target: Resource | Iterable[Resource], config: Mapping[str, Any] | None = None
) -> list[Violation]:
    """Call one policy's `validate` with SDK-built args; a stack policy takes the list of resources."""
    found: list[Violation] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(Violation(policy.name, message, urn))

    if isinstance(policy, ResourceValidationPolicy):
        resources = [target] if isinstance(target, Resource) else list(target)
        for r in resources:
            before = len(found)
            _run(policy.validate(resource_args(r, config), report))
            found[before:] = [Violation(v.policy, v.message, r.urn) for v in found[before:]]
    elif isinstance(policy, StackValidationPolicy):
        resources = [target] if isinstance(target, Resource) else list(target)
        _run(policy.validate(stack_args(resources, config), report))
    else:  # pragma: no cover - the SDK has only these two kinds
        raise TypeError(f"unknown policy kind {type(policy).__name__}")
    return found


def servicer(policies: list[Policy] | None = None) -> _PolicyAnalyzerServicer:
    """The analyzer `PolicyPack(...)` in policy/__main__.py serves, without the gRPC server."""
    return _PolicyAnalyzerServicer(
        PACK_NAME, "0.0.1", policies or POLICIES, EnforcementLevel.MANDATORY, None, None, None, None, None, None, None
    )


def _proto_options(r: Resource) -> Any:
    return proto.AnalyzerResourceOptions(protect=r.protect, parent=r.parent or "")


def _proto_provider(r: Resource) -> Any:
    p = r.provider
    if p is None:
        return None
    return proto.AnalyzerProviderResource(type=p.type, urn=p.urn, name=p.name, properties=to_struct(p.props))


_LEVELS = {
    proto.ADVISORY: "advisory",
    proto.MANDATORY: "mandatory",
    proto.REMEDIATE: "remediate",
    proto.DISABLED: "disabled",
}


def _violations(response: Any, default_urn: str | None) -> list[Violation]:
    return [
        Violation(
            d.policyName, d.message, d.urn or default_urn, _LEVELS.get(d.enforcementLevel, str(d.enforcementLevel))
        )
        for d in response.diagnostics
    ]


def analyze(resources: Iterable[Resource], analyzer: _PolicyAnalyzerServicer | None = None) -> list[Violation]:
    """Every diagnostic the pack reports for these resources: `Analyze` per resource, then `AnalyzeStack`.

    `Violation.message` is the engine's text: the policy's description, a newline, then the message.
    """
    items = list(resources)
    a = analyzer or servicer()
    found: list[Violation] = []
    for r in items:
        request = proto.AnalyzeRequest(
            type=r.type,
            urn=r.urn,
            name=r.name,
            properties=to_struct(r.props),
            options=_proto_options(r),
            provider=_proto_provider(r),
        )
        found.extend(_violations(a.Analyze(request, None), r.urn))
    stack_request = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(
                type=r.type,
                urn=r.urn,
                name=r.name,
                properties=to_struct(r.props),
                options=_proto_options(r),
                provider=_proto_provider(r),
                parent=r.parent or "",
                dependencies=list(r.dependencies),
                propertyDependencies={
                    k: proto.AnalyzerPropertyDependencies(urns=list(v)) for k, v in r.property_dependencies.items()
                },
            )
            for r in items
        ]
    )
    found.extend(_violations(a.AnalyzeStack(stack_request, None), None))
    return found
