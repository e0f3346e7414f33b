"""One-mistake pods: each Pod Security Standards control (and each container rule) broken once, next to its twin.

A mistake is one field set wrong in an otherwise compliant pod; its twin is the same pod with that
field set right (not merely left out). Container mistakes are made in each container list
(`containers`, `initContainers`, `ephemeralContainers`) of a Deployment and in the `containers` of a
kind of every other pod template path (CronJob, bare Pod, PodTemplate); pod mistakes in every kind
that renders pods. Expected texts may name `{who}` (the container) and `{path}` (where the pod spec is).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.policy.cases import (
    KINDS_BY_TEMPLATE_PATH,
    WORKLOAD_KINDS,
    Case,
    bad,
    container,
    ephemeral_container,
    ok,
    pod_spec,
    workload,
)

Mutation = Callable[[dict[str, Any]], None]
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
POD_SPEC_PATHS = {
    "Deployment": "spec.template.spec",
    "StatefulSet": "spec.template.spec",
    "DaemonSet": "spec.template.spec",
    "ReplicaSet": "spec.template.spec",
    "ReplicationController": "spec.template.spec",
    "Job": "spec.template.spec",
    "CronJob": "spec.jobTemplate.spec.template.spec",
    "Pod": "spec",
    "PodTemplate": "template.spec",
}
WHO = {
    "containers": "container 'serving'",
    "initContainers": "initContainer 'migrate'",
    "ephemeralContainers": "ephemeralContainer 'debug'",
}
APPARMOR = "container.apparmor.security.beta.kubernetes.io/serving"


# --- mutations ------------------------------------------------------------------------------------
def sc(**fields: Any) -> Mutation:
    """Set fields of a container's securityContext."""

    def apply(c: dict[str, Any]) -> None:
        c.setdefault("securityContext", {}).update(copy.deepcopy(fields))

    return apply


def sc_unset(name: str) -> Mutation:
    def apply(c: dict[str, Any]) -> None:
        c.get("securityContext", {}).pop(name, None)

    return apply


def caps(add: list[str] | None = None, drop: list[str] | None = None) -> Mutation:
    capabilities: dict[str, list[str]] = {"drop": drop if drop is not None else ["ALL"]}
    if add is not None:
        capabilities["add"] = add
    return sc(capabilities=capabilities)


def field(**fields: Any) -> Mutation:
    def apply(target: dict[str, Any]) -> None:
        target.update(copy.deepcopy(fields))

    return apply


def host_port(port: int) -> Mutation:
    return field(ports=[{"name": "http", "containerPort": 8000, "hostPort": port}])


def drop_memory_limit(c: dict[str, Any]) -> None:
    del c["resources"]["limits"]["memory"]


def keep_resources(c: dict[str, Any]) -> None:
    c["resources"]["limits"]["memory"] = "2Gi"


def pod_field(**fields: Any) -> Mutation:
    def apply(template: dict[str, Any]) -> None:
        template["spec"].update(copy.deepcopy(fields))

    return apply


def pod_sc(**fields: Any) -> Mutation:
    def apply(template: dict[str, Any]) -> None:
        template["spec"].setdefault("securityContext", {}).update(copy.deepcopy(fields))

    return apply


def pod_sc_unset(name: str) -> Mutation:
    def apply(template: dict[str, Any]) -> None:
        template["spec"]["securityContext"].pop(name, None)

    return apply


def volume(source: dict[str, Any]) -> Mutation:
    def apply(template: dict[str, Any]) -> None:
        template["spec"]["volumes"] = [{"name": "data", **copy.deepcopy(source)}]

    return apply


def annotate(key: str, value: str) -> Mutation:
    def apply(template: dict[str, Any]) -> None:
        template["metadata"].setdefault("annotations", {})[key] = value

    return apply


def every_container(mutation: Mutation) -> Mutation:
    def apply(template: dict[str, Any]) -> None:
        for c in template["spec"]["containers"]:
            mutation(c)

    return apply


def both(*mutations: Mutation) -> Mutation:
    def apply(target: dict[str, Any]) -> None:
        for m in mutations:
            m(target)

    return apply


# --- the mistakes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mistake:
    policy: str
    label: str
    expect: str
    bad: Mutation
    good: Mutation
    lists: tuple[str, ...] = CONTAINER_LISTS


LOCALHOST_SECCOMP = {"type": "Localhost", "localhostProfile": "profiles/serving.json"}

CONTAINER_MISTAKES = (
    Mistake("k8s-not-privileged", "privileged", "{who} is privileged", sc(privileged=True), sc(privileged=False)),
    Mistake(
        "k8s-not-privileged",
        "HostProcess",
        "{who} runs as a Windows HostProcess",
        sc(windowsOptions={"hostProcess": True}),
        sc(windowsOptions={"hostProcess": False}),
    ),
    Mistake(
        "k8s-no-privilege-escalation",
        "allowPrivilegeEscalation true",
        "{who} allows privilege escalation",
        sc(allowPrivilegeEscalation=True),
        sc(allowPrivilegeEscalation=False),
    ),
    Mistake(
        "k8s-no-privilege-escalation",
        "allowPrivilegeEscalation unset",
        "{who} allows privilege escalation (the default when unset)",
        sc_unset("allowPrivilegeEscalation"),
        sc(allowPrivilegeEscalation=False),
    ),
    Mistake(
        "k8s-capabilities",
        "adds SYS_ADMIN",
        "{who} adds SYS_ADMIN, beyond the baseline set",
        caps(add=["SYS_ADMIN"]),
        caps(add=["NET_BIND_SERVICE"]),
    ),
    Mistake("k8s-capabilities", "adds NET_RAW", "{who} adds NET_RAW, beyond", caps(add=["NET_RAW"]), caps(add=[])),
    Mistake(
        "k8s-capabilities",
        "adds CHOWN",
        "{who} adds CHOWN; restricted allows only NET_BIND_SERVICE",
        caps(add=["CHOWN"]),
        caps(add=["NET_BIND_SERVICE"]),
    ),
    Mistake(
        "k8s-capabilities",
        "drops NET_RAW only",
        "{who} does not drop ALL",
        caps(drop=["NET_RAW"]),
        caps(drop=["NET_RAW", "ALL"]),
    ),
    Mistake("k8s-capabilities", "drops lowercase all", "{who} does not drop ALL", caps(drop=["all"]), caps()),
    Mistake("k8s-capabilities", "no capabilities", "{who} does not drop ALL", sc_unset("capabilities"), caps()),
    Mistake(
        "k8s-seccomp",
        "seccomp Unconfined",
        "{who} sets seccompProfile Unconfined",
        sc(seccompProfile={"type": "Unconfined"}),
        sc(seccompProfile=LOCALHOST_SECCOMP),
    ),
    Mistake(
        "k8s-apparmor",
        "AppArmor Unconfined",
        "{who} sets appArmorProfile 'Unconfined'",
        sc(appArmorProfile={"type": "Unconfined"}),
        sc(appArmorProfile={"type": "RuntimeDefault"}),
    ),
    Mistake(
        "k8s-selinux",
        "SELinux type",
        "{who} sets seLinuxOptions.type 'spc_t'",
        sc(seLinuxOptions={"type": "spc_t"}),
        sc(seLinuxOptions={"type": "container_init_t"}),
    ),
    Mistake(
        "k8s-selinux",
        "SELinux user",
        "{who} sets seLinuxOptions.user",
        sc(seLinuxOptions={"user": "system_u"}),
        sc(seLinuxOptions={"level": "s0:c123,c456"}),
    ),
    Mistake(
        "k8s-proc-mount",
        "procMount Unmasked",
        "{who} sets procMount 'Unmasked'",
        sc(procMount="Unmasked"),
        sc(procMount="Default"),
    ),
    Mistake("k8s-host-ports", "hostPort", "{who} binds hostPort 8080", host_port(8080), host_port(0)),
    Mistake(
        "k8s-run-as-non-root",
        "runAsNonRoot false",
        "{who} sets runAsNonRoot: false",
        sc(runAsNonRoot=False),
        sc(runAsNonRoot=True),
    ),
    Mistake("k8s-run-as-non-root", "UID 0", "{who} runs as UID 0", sc(runAsUser=0), sc(runAsUser=1000)),
    Mistake(
        "k8s-pinned-image-tags",
        "latest tag",
        "{who} uses the floating tag",
        field(image="ghcr.io/acme/serving:latest"),
        field(image="ghcr.io/acme/serving:1.2.3"),
    ),
    Mistake(
        "k8s-pinned-image-tags",
        "untagged image",
        "{who} uses python without a tag",
        field(image="python"),
        field(image="python:3.11.10-slim"),
    ),
    Mistake(
        "k8s-objects-no-credentials",
        "password in env",
        "is named like a credential ('DB_PASSWORD')",
        field(env=[{"name": "DB_PASSWORD", "value": "hunter2"}]),
        field(env=[{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]),
    ),
    Mistake(
        "k8s-resource-requests-and-limits",
        "no memory limit",
        "{who} has no resources.limits.memory",
        drop_memory_limit,
        keep_resources,
        lists=("containers", "initContainers"),  # the API refuses resources on ephemeral containers
    ),
)

POD_MISTAKES = (
    Mistake(
        "k8s-host-namespaces",
        "hostNetwork",
        "{path}.hostNetwork is true",
        pod_field(hostNetwork=True),
        pod_field(hostNetwork=False),
    ),
    Mistake(
        "k8s-host-namespaces", "hostPID", "{path}.hostPID is true", pod_field(hostPID=True), pod_field(hostPID=False)
    ),
    Mistake(
        "k8s-host-namespaces", "hostIPC", "{path}.hostIPC is true", pod_field(hostIPC=True), pod_field(hostIPC=False)
    ),
    Mistake(
        "k8s-no-host-path",
        "hostPath volume",
        "volume 'data' is a hostPath volume",
        volume({"hostPath": {"path": "/var/run/docker.sock"}}),
        volume({"emptyDir": {}}),
    ),
    Mistake(
        "k8s-volume-types",
        "nfs volume",
        "volume 'data' is of type nfs",
        volume({"nfs": {"server": "nfs.example.com", "path": "/exports"}}),
        volume({"persistentVolumeClaim": {"claimName": "serving-logs"}}),
    ),
    Mistake(
        "k8s-volume-types",
        "awsElasticBlockStore volume",
        "is of type awsElasticBlockStore",
        volume({"awsElasticBlockStore": {"volumeID": "vol-0123"}}),
        volume({"csi": {"driver": "ebs.csi.aws.com"}}),
    ),
    Mistake(
        "k8s-seccomp",
        "pod seccomp Unconfined",
        "{path}.securityContext.seccompProfile is Unconfined",
        pod_sc(seccompProfile={"type": "Unconfined"}),
        pod_sc(seccompProfile=LOCALHOST_SECCOMP),
    ),
    Mistake(
        "k8s-seccomp",
        "no seccomp profile",
        "container 'serving' runs without a seccomp profile",
        pod_sc_unset("seccompProfile"),
        both(pod_sc_unset("seccompProfile"), every_container(sc(seccompProfile={"type": "RuntimeDefault"}))),
    ),
    Mistake(
        "k8s-apparmor",
        "pod AppArmor Unconfined",
        "the pod sets appArmorProfile 'Unconfined'",
        pod_sc(appArmorProfile={"type": "Unconfined"}),
        pod_sc(appArmorProfile={"type": "Localhost", "localhostProfile": "k8s-serving"}),
    ),
    Mistake(
        "k8s-apparmor",
        "AppArmor annotation",
        f"annotation {APPARMOR}='unconfined'",
        annotate(APPARMOR, "unconfined"),
        annotate(APPARMOR, "runtime/default"),
    ),
    Mistake(
        "k8s-selinux",
        "pod SELinux role",
        "the pod sets seLinuxOptions.role",
        pod_sc(seLinuxOptions={"role": "sysadm_r"}),
        pod_sc(seLinuxOptions={"type": "container_t"}),
    ),
    Mistake(
        "k8s-safe-sysctls",
        "unsafe sysctl",
        "sysctl 'kernel.msgmax' is not one of the safe sysctls",
        pod_sc(sysctls=[{"name": "kernel.msgmax", "value": "65536"}]),
        pod_sc(sysctls=[{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]),
    ),
    Mistake(
        "k8s-run-as-non-root",
        "runAsNonRoot unset",
        "container 'serving' is not required to run as non-root",
        pod_sc_unset("runAsNonRoot"),
        both(pod_sc_unset("runAsNonRoot"), every_container(sc(runAsNonRoot=True))),
    ),
    Mistake(
        "k8s-run-as-non-root",
        "pod runAsNonRoot false",
        "{path}.securityContext.runAsNonRoot is false",
        pod_sc(runAsNonRoot=False),
        pod_sc(runAsNonRoot=True),
    ),
    Mistake(
        "k8s-run-as-non-root",
        "pod UID 0",
        "{path}.securityContext.runAsUser is 0",
        pod_sc(runAsUser=0),
        pod_sc(runAsUser=1000),
    ),
    Mistake(
        "k8s-not-privileged",
        "pod HostProcess",
        "the pod runs as a Windows HostProcess",
        pod_sc(windowsOptions={"hostProcess": True}),
        pod_sc(windowsOptions={"hostProcess": False}),
    ),
)


# --- building the cases ------------------------------------------------------------------------------
def _pod(kind: str, list_name: str = "containers", mutation: Mutation | None = None) -> Any:
    main, init, debug = container(), container(name="migrate"), ephemeral_container()
    target = {"containers": main, "initContainers": init, "ephemeralContainers": debug}[list_name]
    if mutation is not None:
        mutation(target)
    spec = pod_spec(
        main,
        init=[init] if list_name == "initContainers" else (),
        ephemeral=[debug] if list_name == "ephemeralContainers" else (),
    )
    return workload(kind, spec)


def _pod_with(kind: str, mutation: Mutation) -> Any:
    template: dict[str, Any] = {"metadata": {}, "spec": pod_spec(container())}
    mutation(template)
    return workload(kind, template["spec"], annotations=template["metadata"].get("annotations"))


def _pairs() -> Iterator[tuple[str, Case]]:
    for m in CONTAINER_MISTAKES:
        places = [("Deployment", lst) for lst in m.lists] + [
            (kind, "containers") for kind in KINDS_BY_TEMPLATE_PATH if kind != "Deployment"
        ]
        for kind, lst in places:
            tags = {"one-mistake", f"list:{lst}", f"kind:{kind}"}
            expect = m.expect.format(who=WHO[lst], path=POD_SPEC_PATHS[kind])
            where = f"{kind} {lst}"
            yield m.policy, bad(_pod(kind, lst, m.bad), expect, f"{m.label} in {where}", tags=tags)
            yield m.policy, ok(_pod(kind, lst, m.good), f"twin of {m.label} in {where}", tags=tags)
    for m in POD_MISTAKES:
        for kind in WORKLOAD_KINDS:
            tags = {"one-mistake", "pod", f"kind:{kind}"}
            expect = m.expect.format(path=POD_SPEC_PATHS[kind])
            yield m.policy, bad(_pod_with(kind, m.bad), expect, f"{m.label} in {kind}", tags=tags)
            yield m.policy, ok(_pod_with(kind, m.good), f"twin of {m.label} in {kind}", tags=tags)


def windows_pod(kind: str = "Deployment") -> Any:
    """A Windows pod: exempt from the Linux-only restricted controls (privilege escalation, seccomp, capabilities)."""
    bare = container(securityContext={})
    return workload(kind, pod_spec(bare, context={"runAsNonRoot": True}, os={"name": "windows"}))


def pod_security_cases() -> dict[str, list[Case]]:
    cases: dict[str, list[Case]] = {}
    for policy, case in _pairs():
        cases.setdefault(policy, []).append(case)
    for policy in ("k8s-no-privilege-escalation", "k8s-capabilities", "k8s-seccomp"):
        cases[policy].append(ok(windows_pod(), "Windows pod: Linux-only restricted control does not apply"))
    return cases
