"""Registrations of a mock run (`harness.run.run_program`) as the resources the engine gives a policy pack."""

from __future__ import annotations

from typing import Any

from pulumi_policy.deserialize import SPECIAL_SIG_KEY

from harness.mocks import Registration, SecretValue
from harness.run import ProgramRun
from policy.testing import Resource, secret


def _wire(value: Any) -> Any:
    """Harness values in Pulumi's wire encoding (secrets as secret envelopes), engine-internal keys dropped."""
    if isinstance(value, SecretValue):
        return secret(_wire(value.value))
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _props(reg: Registration) -> dict[str, Any]:
    """Inputs merged with the provider's outputs (what the engine has after the step).

    The engine marks the outputs a resource declares secret (`additional_secret_outputs`, which the
    providers' SDKs set for access keys, passwords, Secret data...); mocks do not, so this does.
    """
    props = _wire(reg.inputs)
    secret_outputs = set(reg.additional_secret_outputs)
    for key, value in _wire(reg.outputs).items():
        if key in secret_outputs and not (isinstance(value, dict) and SPECIAL_SIG_KEY in value):
            value = secret(value)
        props.setdefault(key, value)
    return props


def resources_from_run(run: ProgramRun) -> list[Resource]:
    by_urn = {r.urn: r for r in run.registrations}
    plain: dict[str, Resource] = {
        reg.urn: Resource(
            type=reg.type,
            name=reg.name,
            props=_props(reg),
            urn=reg.urn,
            parent=reg.parent,
            dependencies=tuple(reg.dependencies),
            protect=reg.protect,
        )
        for reg in run.registrations
    }
    for reg in run.registrations:
        # A provider reference is "<provider urn>::<provider id>".
        provider_urn = reg.provider.rsplit("::", 1)[0] if reg.provider else ""
        if provider_urn in by_urn:
            plain[reg.urn].provider = plain[provider_urn]
    return list(plain.values())
