"""Every policy: its compliant inputs pass and each violating input is reported with a message that says what to change.

Each case is checked twice: by calling the policy's `validate` with `ResourceValidationArgs` /
`StackValidationArgs` built as the SDK builds them, and through the SDK's analyzer servicer (what
`PolicyPack` serves to the CLI), which must report it as a mandatory diagnostic (advisory for the policies in
`ADVISORY`). A one-mistake pod is
reported by its policy alone, and its compliant twin passes the whole pack; every Pod Security control
is tried in every container list and every pod template path.
"""

from __future__ import annotations

import pytest

from policy.policies import ADVISORY, POLICIES, names, policy_named
from policy.testing import Resource, Violation, analyze, check, resource_args
from tests.policy.cases import (
    KINDS_BY_TEMPLATE_PATH,
    WORKLOAD_KINDS,
    Case,
    all_cases,
    baseline_job,
    config_map,
    container,
    deployment,
    namespace,
    pod_spec,
    workload,
)

CASES = all_cases()
# A message says what to change with one of these.
FIX_VERBS = (
    "Set ",
    "Add ",
    "Keep ",
    "Move ",
    "Pin ",
    "Remove ",
    "Attach ",
    "List ",
    "Create ",
    "Pass ",
    "Use ",
    "Restrict ",
)


def _params(violating: bool) -> list[object]:
    return [
        pytest.param(name, case, id=f"{name}[{case.label or i}]")
        for name, cases in CASES.items()
        for i, case in enumerate(cases)
        if (case.expect is not None) == violating
    ]


def _targets(case: Case) -> list[Resource]:
    return case.target if isinstance(case.target, list) else [case.target]


def _of(policy: str, found: list[Violation]) -> list[Violation]:
    return [v for v in found if v.policy == policy]


def test_every_policy_has_compliant_and_violating_cases() -> None:
    assert sorted(CASES) == sorted(names()), (
        "add cases to tests/policy/cases.py for new policies (and drop removed ones)"
    )
    for name, cases in CASES.items():
        assert any(c.expect is None for c in cases), f"{name} has no compliant case"
        assert any(c.expect is not None for c in cases), f"{name} has no violating case"


def _level(name: str) -> str:
    return "advisory" if name in ADVISORY else "mandatory"


def test_pack_is_mandatory_but_the_advisory_list_and_named_uniquely() -> None:
    assert len(set(names())) == len(POLICIES)
    assert ADVISORY <= set(names()), "ADVISORY names a policy the pack does not have"
    for p in POLICIES:
        assert p.enforcement_level is not None and p.enforcement_level.value == _level(p.name), p.name
        assert p.description.endswith("."), p.name


@pytest.mark.parametrize(("name", "case"), _params(violating=False))
def test_compliant_input_passes(name: str, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in case.env.items():
        monkeypatch.setenv(var, value)
    assert check(policy_named(name), case.target) == []
    found = analyze(_targets(case))
    # A one-mistake twin passes the whole pack, not only the policy of its mistake.
    assert (found if "one-mistake" in case.tags else _of(name, found)) == [], found


@pytest.mark.parametrize(("name", "case"), _params(violating=True))
def test_violation_is_reported(name: str, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in case.env.items():
        monkeypatch.setenv(var, value)
    expect = case.expect
    assert expect is not None
    found = check(policy_named(name), case.target)
    assert found, f"{name} did not report {case.label}"
    assert any(expect in v.message for v in found), [v.message for v in found]
    # Each message names the change to make.
    assert all(any(verb in v.message for verb in FIX_VERBS) for v in found), found
    # The engine gets the same violation, at the policy's level (mandatory but ADVISORY), prefixed with the
    # policy's description.
    found_by_pack = analyze(_targets(case))
    if "one-mistake" in case.tags:  # one mistake is reported by its policy alone
        assert {v.policy for v in found_by_pack} == {name}, found_by_pack
    diagnostics = _of(name, found_by_pack)
    assert diagnostics and all(d.enforcement == _level(name) for d in diagnostics), diagnostics
    description = policy_named(name).description
    assert any(d.message.startswith(description + "\n") and expect in d.message for d in diagnostics), diagnostics


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_pod_specs_of_every_workload_kind_are_checked(kind: str) -> None:
    good = workload(kind, pod_spec())
    bad = workload(kind, pod_spec(container(image="nginx:latest", securityContext={}, resources=None), context={}))
    assert [v for v in analyze([good])] == []
    reported = {v.policy for v in analyze([bad])}
    assert reported == {
        "k8s-run-as-non-root",
        "k8s-no-privilege-escalation",
        "k8s-capabilities",
        "k8s-seccomp",
        "k8s-resource-requests-and-limits",
        "k8s-pinned-image-tags",
    }, (kind, reported)


POD_SECURITY_CONTAINER_POLICIES = {
    "k8s-not-privileged",
    "k8s-no-privilege-escalation",
    "k8s-capabilities",
    "k8s-seccomp",
    "k8s-apparmor",
    "k8s-selinux",
    "k8s-proc-mount",
    "k8s-host-ports",
    "k8s-run-as-non-root",
}
POD_SECURITY_POD_POLICIES = {
    "k8s-host-namespaces",
    "k8s-no-host-path",
    "k8s-volume-types",
    "k8s-seccomp",
    "k8s-apparmor",
    "k8s-selinux",
    "k8s-safe-sysctls",
    "k8s-run-as-non-root",
    "k8s-not-privileged",
}


def _tried(name: str, *tags: str) -> bool:
    return any(c.expect is not None and set(tags) <= c.tags for c in CASES[name])


def test_every_pod_security_control_is_tried_in_every_container_list_and_pod_template_path() -> None:
    for name in POD_SECURITY_CONTAINER_POLICIES:
        for lst in ("containers", "initContainers", "ephemeralContainers"):
            assert _tried(name, f"list:{lst}"), f"{name}: no one-mistake case in {lst}"
        for kind in KINDS_BY_TEMPLATE_PATH:
            assert _tried(name, "list:containers", f"kind:{kind}"), f"{name}: no container case in a {kind}"
    for name in POD_SECURITY_POD_POLICIES:
        for kind in WORKLOAD_KINDS:
            assert _tried(name, "pod", f"kind:{kind}"), f"{name}: no pod-level case in a {kind}"


def test_numbers_arrive_as_floats_like_in_the_engine() -> None:
    # The SDK's MessageToDict turns every number into a float: a UID of 1000 arrives as 1000.0.
    args = resource_args(deployment())
    ctx = args.props["spec"]["template"]["spec"]["securityContext"]
    assert ctx["runAsUser"] == 10001.0 and isinstance(ctx["runAsUser"], float)


def test_unknown_values_during_preview_are_advisory_not_a_crash() -> None:
    preview = deployment(container(image="04da6b54-80e4-46f7-96ec-b56ff0331ba9"))
    found = [v for v in analyze([preview]) if v.policy == "k8s-pinned-image-tags"]
    assert len(found) == 1 and found[0].enforcement == "advisory", found
    assert "can't be known during preview" in found[0].message


def test_secrets_are_unwrapped_before_policies_see_them() -> None:
    from policy.testing import secret

    leaked = config_map({"DATABASE_URL": secret("postgresql://mlflow:s3cr3t@db/mlflow")})  # type: ignore[dict-item]
    assert [v.policy for v in analyze([leaked])] == ["k8s-configmap-no-secrets"]


def test_configmap_heuristic_agrees_with_the_endpoints_contract() -> None:
    """The contract marks which variables are secret (they go to Secrets, the rest to the endpoints
    ConfigMap): the ConfigMap policy must flag exactly the secret ones."""
    from policy.policies import secret_looking_key
    from services.common import contract

    assert contract.SECRET_VARS, "the contract declares no secret variables"
    for var in contract.ALL_VARS:
        assert secret_looking_key(var.name) == var.secret, (
            f"{var.name}: secret={var.secret} in services/common/contract.py"
        )


def test_preview_of_a_new_bucket() -> None:
    """During preview the new bucket's id, ARN and policy document are unknown: the companions are still
    matched (by dependency) and pass; only the checks that read the document wait for `up` (advisory now)."""
    from tests.policy.cases import secure_bucket

    found = analyze(secure_bucket(preview=True))
    assert sorted((v.policy, v.enforcement) for v in found) == [
        ("iam-no-wildcard-actions", "advisory"),
        ("s3-no-public-policy", "advisory"),
        ("s3-tls-only", "advisory"),
    ], found
    assert all("can't be known during preview" in v.message for v in found)


def test_a_pod_declaring_baseline_is_spared_only_the_restricted_controls() -> None:
    """The NFS preparation Job's shape (root, CHOWN/DAC_OVERRIDE/FOWNER) passes in a baseline namespace; the same
    pod adding a capability beyond baseline, or privileged, is still reported: baseline is relaxed, not off."""
    ns = namespace("mlops-storage", "baseline")
    assert analyze([ns, baseline_job()]) == []
    beyond = baseline_job()
    c = beyond.props["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"]["capabilities"]["add"].append("SYS_ADMIN")
    assert {v.policy for v in analyze([ns, beyond])} == {"k8s-capabilities"}
    privileged = baseline_job()
    privileged.props["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    assert {v.policy for v in analyze([ns, privileged])} == {"k8s-not-privileged"}


def test_every_policy_is_documented() -> None:
    """docs/policy.md lists every policy of the pack (by its name in backquotes), and every advisory one is marked."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    assert [n for n in names() if f"`{n}`" not in doc] == []
    assert [n for n in ADVISORY if f"`{n}` (advisory)" not in doc] == []
