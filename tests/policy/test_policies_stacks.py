"""Both stacks, as the real program registers them under mocks, pass every policy.

`stack_run(stack)` (tests/conftest.py) runs infra/__main__.py with Pulumi.<stack>.yaml; the registrations
become the resources the engine hands the pack (type, name, URN, parent, dependencies, provider, and
props = inputs merged with the provider's outputs, secrets in wire form), and the SDK's analyzer runs
every resource policy on each and every stack policy on the whole set, as `pulumi preview
--policy-pack policy` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policy.policies import policy_named
from policy.testing import Resource, Violation, analyze, check
from tests.policy.adapter import resources_from_run
from tests.policy.cases import bucket, config_map, db

STACKS = ("dev", "prod")


def _report(violations: list[Violation]) -> str:
    return "\n".join(f"- [{v.policy}] {v.urn}\n    {v.message.replace(chr(10), chr(10) + '    ')}" for v in violations)


@pytest.fixture
def stack_resources(stack_run: Callable[[str], Any]) -> Callable[[str], list[Resource]]:
    return lambda stack: resources_from_run(stack_run(stack))


@pytest.mark.parametrize("stack", STACKS)
def test_stack_passes_every_policy(
    stack: str, stack_resources: Callable[[str], list[Resource]], monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = stack_resources(stack)
    assert any(r.type == "kubernetes:core/v1:Namespace" for r in resources), (
        "the program registered nothing recognisable"
    )
    monkeypatch.setenv("PULUMI_STACK", stack)  # as the CLI sets it for the pack
    found = analyze(resources)
    assert not found, f"stack {stack} violates the policy pack:\n{_report(found)}"


# What the policies govern must really be in the runs, or "passes every policy" would say little.
GOVERNED = {
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:iam/user:User",
    "aws:iam/accessKey:AccessKey",
    "aws:iam/userPolicy:UserPolicy",
    "kubernetes:core/v1:Namespace",
    "kubernetes:apps/v1:Deployment",
    "kubernetes:batch/v1:Job",
    "kubernetes:core/v1:Service",
    "kubernetes:core/v1:Secret",
    "kubernetes:core/v1:ConfigMap",
    "kubernetes:core/v1:PersistentVolume",
    "kubernetes:networking.k8s.io/v1:Ingress",
    "kubernetes:helm.sh/v3:Release",
}
GOVERNED_BY_STACK = {
    "dev": GOVERNED | {"kubernetes:apps/v1:StatefulSet"},
    "prod": GOVERNED | {"aws:rds/instance:Instance", "aws:ec2/securityGroup:SecurityGroup"},
}


@pytest.mark.parametrize("stack", STACKS)
def test_the_runs_contain_what_the_policies_govern(
    stack: str, stack_resources: Callable[[str], list[Resource]]
) -> None:
    missing = GOVERNED_BY_STACK[stack] - {r.type for r in stack_resources(stack)}
    assert not missing, (
        f"the {stack} run no longer registers {sorted(missing)}: update GOVERNED_BY_STACK if that is intended"
    )


def test_prod_database_is_recognised_as_production_by_its_own_provider(
    stack_resources: Callable[[str], list[Resource]],
) -> None:
    """With no PULUMI_STACK and no stack config, the real prod RDS instance still counts as production
    (its AWS provider's default tags), and it has deletion protection."""
    (instance,) = [r for r in stack_resources("prod") if r.type == "aws:rds/instance:Instance"]
    assert instance.provider is not None and instance.provider.type == "pulumi:providers:aws"
    assert check(policy_named("rds-deletion-protection-in-prod"), instance) == []
    stripped = Resource(
        instance.type, instance.name, {**instance.props, "deletionProtection": False}, provider=instance.provider
    )
    assert check(policy_named("rds-deletion-protection-in-prod"), stripped), "prod RDS not recognised as production"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_check_would_catch_a_violation(stack: str, stack_resources: Callable[[str], list[Resource]]) -> None:
    """The stack-wide check is not vacuous: the same run plus one bad object and one bare bucket fails."""
    resources = [*stack_resources(stack), config_map({"DB_PASSWORD": "hunter2"}), bucket("stray")]
    reported = {v.policy for v in analyze(resources)}
    assert {
        "k8s-configmap-no-secrets",
        "s3-public-access-blocked",
        "s3-encryption-configured",
        "s3-versioning-enabled",
        "s3-tls-only",
    } <= reported


def test_prod_provider_tags_mark_prod_databases(stack_resources: Callable[[str], list[Resource]]) -> None:
    """Without PULUMI_STACK or stack config, the program's own AWS provider tags decide "production"."""
    providers = {stack: next(r for r in stack_resources(stack) if r.type == "pulumi:providers:aws") for stack in STACKS}
    unprotected = {stack: db(deletionProtection=False, provider=p) for stack, p in providers.items()}
    policy = policy_named("rds-deletion-protection-in-prod")
    assert check(policy, unprotected["dev"]) == []
    found = check(policy, unprotected["prod"])
    assert found and "provider default tag mlops-platform/environment=prod" in found[0].message, found
