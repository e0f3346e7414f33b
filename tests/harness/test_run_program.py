"""The whole program under mocks, once per shipped stack file: every harness check passes, the apply order
included (`pulumi destroy --exclude-protected` keeps exactly the namespaces of the protected objects)."""

from __future__ import annotations

from typing import Any

import pytest

from harness import checks, order
from harness.run import ROOT, read_stack_file, run_program
from stacks.settings import SettingsError, load_settings

STACKS = ["dev", "prod"]


def min_version(stack: str) -> str:
    cfg = read_stack_file(stack)
    return load_settings(stack, cfg.config, set(cfg.secret_keys), cfg.source).kubernetes.min_version


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_is_valid_for_oldest_and_newest_kubernetes(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    assert run.kubernetes_objects(), "the program registered no Kubernetes objects"
    versions = sorted({min_version(stack), checks.LATEST_KUBERNETES})
    assert versions[0] == "1.30"
    assert checks.kubernetes_schema_problems(run, versions) == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_helm_release_validates_against_its_chart(stack: str, stack_run: Any) -> None:
    assert checks.helm_values_problems(stack_run(stack)) == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_reference_resolves(stack: str, stack_run: Any) -> None:
    assert checks.reference_problems(stack_run(stack)) == []


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_in_plaintext(stack: str, stack_run: Any) -> None:
    assert checks.plaintext_secret_problems(stack_run(stack)) == []


@pytest.mark.parametrize("stack", STACKS)
def test_component_structure(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    assert checks.structure_problems(run) == []
    components = [r for r in run.registrations if not r.custom]
    assert components, "the program composes no components"


@pytest.mark.parametrize("stack", STACKS)
def test_apply_order(stack: str, stack_run: Any) -> None:
    assert order.problems(stack_run(stack)) == []


@pytest.mark.parametrize("stack", STACKS)
def test_destroy_keeps_the_namespaces_of_protected_objects_only(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    kept = order.destroy_plan(run).kept
    namespaces = {order.name_of(r) for r in run.of_type(order.NAMESPACE_TYPE) if r.urn in kept}
    holding = {order.namespace_of(r) for r in run.registrations if r.protect and order.namespace_of(r)}
    assert namespaces == holding
    # the serving logs' claim in both stacks, and dev's database StatefulSet (prod's database is RDS)
    assert {f"mlops-{stack}-serving", *([f"mlops-{stack}-data"] if stack == "dev" else [])} <= namespaces


@pytest.mark.parametrize("stack", STACKS)
def test_namespaces_are_per_stack_with_pod_security(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    for ns in run.of_type("kubernetes:core/v1:Namespace"):
        meta = ns.manifest["metadata"]
        assert meta["name"].startswith(f"mlops-{stack}-") or meta["labels"].get("mlops-platform/stack") == stack
        assert meta["labels"]["pod-security.kubernetes.io/enforce"] in ("restricted", "baseline", "privileged")


def test_a_secure_stack_value_reaches_the_program_as_a_secret(tmp_path: Any) -> None:
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    text += "  mlops-platform:alerts.slackWebhookUrl:\n    secure: v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBBBBBB\n"
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text(text)
    run = run_program("dev", stack_file)
    assert checks.plaintext_secret_problems(run) == []


def test_a_plaintext_secret_in_the_stack_file_is_refused(tmp_path: Any) -> None:
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    text += "  mlops-platform:alerts.slackWebhookUrl: https://hooks.slack.com/services/T0/B0/XYZ\n"
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text(text)
    with pytest.raises(SettingsError, match=r"alerts\.slackWebhookUrl is a secret"):
        run_program("dev", stack_file)


def test_shipped_stack_files_hold_no_plaintext_secret() -> None:
    from stacks.settings import PROJECT, declared

    secret_keys = {f"{PROJECT}:{key}" for key, meta, _ in declared() if meta.secret}
    for stack in STACKS:
        cfg = read_stack_file(stack)
        plain = [k for k in cfg.config if k in secret_keys and k not in cfg.secret_keys]
        assert plain == [], f"Pulumi.{stack}.yaml holds secrets in plaintext: {plain}"
