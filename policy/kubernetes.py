"""Kubernetes policies: the Pod Security Standards (baseline and restricted), exposure, namespaces, Helm.

Every pod the program renders itself is held to the Pod Security Standards at the restricted level,
whatever its namespace: these are resource policies, which the engine runs before each resource's
step, so a violation blocks `pulumi up` before the object reaches the cluster. A pod is any pod
template of a Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob
(`spec.jobTemplate.spec.template`), PodTemplate, or a bare Pod; its containers are `containers`,
`initContainers` and `ephemeralContainers`. Helm v3 releases are rendered by Helm inside the provider,
so their pods cannot be seen: `k8s-namespace-pod-security` makes sure they land in a namespace this
stack labels to enforce baseline or restricted, where the cluster's Pod Security Admission checks them.

One declared exception: a pod whose template carries the label `mlops-platform/pod-security: baseline`
(POD_LEVEL_LABEL) is held to baseline, not restricted (the NFS preparation Job must chown as root). The stack
policy `k8s-declared-baseline-pods` then requires it to live in a namespace this stack creates with
`pod-security.kubernetes.io/enforce: baseline`, so the cluster enforces exactly what the pack relaxed.

The field lists follow https://kubernetes.io/docs/concepts/security/pod-security-standards/ for the
clusters the stacks support (`kubernetes.minVersion` 1.30).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

from policy.common import (
    UnknownValueError,
    as_list,
    get,
    group_kind,
    k8s_name,
    kind,
    known_items,
    show_number,
    truthy,
)

# Where the pod template (an object with `metadata` and `spec`) sits in each kind; () = the object itself.
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "apps:Deployment": ("spec", "template"),
    "apps:StatefulSet": ("spec", "template"),
    "apps:DaemonSet": ("spec", "template"),
    "apps:ReplicaSet": ("spec", "template"),
    "extensions:Deployment": ("spec", "template"),
    "extensions:DaemonSet": ("spec", "template"),
    "extensions:ReplicaSet": ("spec", "template"),
    "batch:Job": ("spec", "template"),
    "batch:CronJob": ("spec", "jobTemplate", "spec", "template"),
    "core:ReplicationController": ("spec", "template"),
    "core:PodTemplate": ("template",),
    "core:Pod": (),
}
CONTAINER_LISTS = (
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
)

# Baseline: capabilities a container may add (the container runtimes' default set, without NET_RAW).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_ADD_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# Baseline: sysctls a pod may set (net.ipv4.tcp_rmem/tcp_wmem are safe for kubelets from 1.32 only).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")
APPARMOR_TYPES = ("RuntimeDefault", "Localhost")
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
# Restricted: the only volume sources a pod may use (hostPath is reported by k8s-no-host-path).
RESTRICTED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)


# The label by which a pod template declares the baseline level (see the module docstring).
POD_LEVEL_LABEL = "mlops-platform/pod-security"


# --- the pod model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Container:
    kind: str  # container, initContainer or ephemeralContainer
    name: str
    spec: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def context(self, *path: str) -> Any:
        return get(self.spec, "securityContext", *path)


@dataclass(frozen=True)
class Pod:
    label: str  # "Deployment mlops-serving/serving"
    path: str  # where the pod spec is: "spec.template.spec"
    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    containers: tuple[Container, ...]

    def context(self, *path: str) -> Any:
        return get(self.spec, "securityContext", *path)

    def contexts(self, *path: str) -> list[tuple[str, Any]]:
        """(who, value) of a securityContext field of the pod, then of each container."""
        return [("the pod", self.context(*path))] + [(c.label, c.context(*path)) for c in self.containers]

    @property
    def baseline(self) -> bool:
        """The pod declares the baseline level (POD_LEVEL_LABEL): the restricted-only controls do not apply."""
        labels = self.metadata.get("labels")
        return isinstance(labels, Mapping) and labels.get(POD_LEVEL_LABEL) == "baseline"

    @property
    def windows(self) -> bool:
        """PSS exempts Windows pods (spec.os.name: windows) from the Linux-only restricted controls."""
        return get(self.spec, "os", "name") == "windows"


def pod_of(resource_type: str, props: Mapping[str, Any], name: str) -> Pod | None:
    """The pod a Kubernetes object renders, or None if it renders none."""
    path = POD_TEMPLATE_PATHS.get(group_kind(resource_type) or "")
    if path is None:
        return None
    template = get(props, *path) if path else props
    spec = get(template, "spec")
    if not isinstance(spec, Mapping):
        return None
    containers = []
    for key, container_kind in CONTAINER_LISTS:
        for i, c in enumerate(as_list(spec.get(key))):
            if isinstance(c, Mapping):
                containers.append(Container(container_kind, str(c.get("name") or f"#{i}"), c))
    metadata = get(template, "metadata")
    return Pod(
        label=f"{kind(resource_type)} {k8s_name(props, name)}",
        path=".".join((*path, "spec")),
        metadata=metadata if isinstance(metadata, Mapping) else {},
        spec=spec,
        containers=tuple(containers),
    )


Report = Callable[[str], None]


def pod_check(check: Callable[[Pod, Report], None]) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """A resource policy's `validate` from a check of one pod: it runs on every object that renders a pod."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        pod = pod_of(args.resource_type, args.props, args.name)
        if pod is not None:
            check(pod, lambda message: report(message, None))

    validate.__name__ = check.__name__
    validate.__doc__ = check.__doc__
    return validate


# --- baseline ------------------------------------------------------------------------------------------
@pod_check
def validate_host_namespaces(pod: Pod, report: Report) -> None:
    for fld, what in (("hostNetwork", "network"), ("hostPID", "process"), ("hostIPC", "IPC")):
        if truthy(pod.spec.get(fld)):
            report(
                f"{pod.label}: {pod.path}.{fld} is true (the pod shares the node's {what} namespace). "
                f"Remove {fld} (or set it to false).",
            )


@pod_check
def validate_host_ports(pod: Pod, report: Report) -> None:
    for c in pod.containers:
        for port in as_list(c.spec.get("ports")):
            host_port = get(port, "hostPort")
            if host_port not in (None, 0, 0.0):
                report(
                    f"{pod.label}: {c.label} binds hostPort {show_number(host_port)} on the node. "
                    "Remove hostPort and reach the pod through a Service.",
                )


@pod_check
def validate_no_host_path(pod: Pod, report: Report) -> None:
    for i, volume in enumerate(as_list(pod.spec.get("volumes"))):
        if get(volume, "hostPath") is not None:
            report(
                f"{pod.label}: volume {get(volume, 'name') or i!r} is a hostPath volume (the node's filesystem). "
                "Use a persistentVolumeClaim, emptyDir, configMap or secret volume instead.",
            )


@pod_check
def validate_not_privileged(pod: Pod, report: Report) -> None:
    for c in pod.containers:
        if truthy(c.context("privileged")):
            report(f"{pod.label}: {c.label} is privileged. Remove securityContext.privileged (or set it to false).")
    host_process = pod.contexts("windowsOptions", "hostProcess")
    for who, value in host_process:
        if truthy(value):
            report(
                f"{pod.label}: {who} runs as a Windows HostProcess (full access to the node). "
                "Remove securityContext.windowsOptions.hostProcess.",
            )


@pod_check
def validate_capabilities(pod: Pod, report: Report) -> None:
    for c in pod.containers:
        added = [str(a) for a in as_list(c.context("capabilities", "add"))]
        dropped = [str(d) for d in as_list(c.context("capabilities", "drop"))]
        beyond_baseline = [a for a in added if a not in BASELINE_CAPABILITIES]
        if beyond_baseline:
            report(
                f"{pod.label}: {c.label} adds {', '.join(beyond_baseline)}, beyond the baseline set. "
                "Remove them from securityContext.capabilities.add (only NET_BIND_SERVICE may be added).",
            )
        if pod.windows or pod.baseline:
            continue
        beyond_restricted = [a for a in added if a in BASELINE_CAPABILITIES and a not in RESTRICTED_ADD_CAPABILITIES]
        if beyond_restricted:
            report(
                f"{pod.label}: {c.label} adds {', '.join(beyond_restricted)}; restricted allows only NET_BIND_SERVICE. "
                "Remove them from securityContext.capabilities.add.",
            )
        if "ALL" not in dropped:
            report(
                f"{pod.label}: {c.label} does not drop ALL capabilities. "
                'Set securityContext.capabilities.drop: ["ALL"].',
            )


@pod_check
def validate_seccomp(pod: Pod, report: Report) -> None:
    pod_type = pod.context("seccompProfile", "type")
    if pod_type == "Unconfined":
        report(
            f"{pod.label}: {pod.path}.securityContext.seccompProfile is Unconfined. "
            "Set its type to RuntimeDefault (or Localhost).",
        )
    for c in pod.containers:
        c_type = c.context("seccompProfile", "type")
        if c_type == "Unconfined":
            report(
                f"{pod.label}: {c.label} sets seccompProfile Unconfined. "
                "Set its type to RuntimeDefault (or Localhost).",
            )
        elif pod.windows or pod.baseline:
            continue
        elif c_type is None and pod_type not in SECCOMP_TYPES:
            report(
                f"{pod.label}: {c.label} runs without a seccomp profile (neither it nor the pod sets one). "
                f"Set {pod.path}.securityContext.seccompProfile.type: RuntimeDefault.",
            )
        elif c_type is not None and c_type not in SECCOMP_TYPES:
            report(f"{pod.label}: {c.label} sets seccompProfile {c_type!r}. Set it to RuntimeDefault.")


@pod_check
def validate_apparmor(pod: Pod, report: Report) -> None:
    profiles = pod.contexts("appArmorProfile", "type")
    for who, profile in profiles:
        if profile is not None and profile not in APPARMOR_TYPES:
            report(
                f"{pod.label}: {who} sets appArmorProfile {profile!r}. "
                "Remove it or set its type to RuntimeDefault (or Localhost).",
            )
    annotations = pod.metadata.get("annotations")
    if isinstance(annotations, Mapping):
        for key in annotations:
            value = annotations.get(key)
            if str(key).startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or (isinstance(value, str) and value.startswith("localhost/"))
            ):
                report(
                    f"{pod.label}: annotation {key}={value!r} overrides the AppArmor profile. "
                    "Remove it (or set runtime/default).",
                )


@pod_check
def validate_selinux(pod: Pod, report: Report) -> None:
    options = pod.contexts("seLinuxOptions")
    for who, opts in options:
        if not isinstance(opts, Mapping):
            continue
        selinux_type = opts.get("type")
        if selinux_type is not None and selinux_type not in SELINUX_TYPES:
            report(
                f"{pod.label}: {who} sets seLinuxOptions.type {selinux_type!r}. "
                f"Remove it or use one of {', '.join(sorted(t for t in SELINUX_TYPES if t))}.",
            )
        for fld in ("user", "role"):
            if opts.get(fld) not in (None, ""):
                report(f"{pod.label}: {who} sets seLinuxOptions.{fld}. Remove seLinuxOptions.{fld}.")


@pod_check
def validate_proc_mount(pod: Pod, report: Report) -> None:
    for c in pod.containers:
        proc_mount = c.context("procMount")
        if proc_mount not in (None, "Default"):
            report(
                f"{pod.label}: {c.label} sets procMount {proc_mount!r} (unmasked /proc). "
                "Remove securityContext.procMount (or set Default).",
            )


@pod_check
def validate_sysctls(pod: Pod, report: Report) -> None:
    for sysctl in as_list(pod.context("sysctls")):
        name = get(sysctl, "name")
        if name not in SAFE_SYSCTLS:
            report(
                f"{pod.label}: sysctl {name!r} is not one of the safe sysctls. "
                f"Remove it from {pod.path}.securityContext.sysctls (safe: {', '.join(sorted(SAFE_SYSCTLS))}).",
            )


# --- restricted -----------------------------------------------------------------------------------------
@pod_check
def validate_volume_types(pod: Pod, report: Report) -> None:
    if pod.baseline:
        return
    for i, volume in enumerate(as_list(pod.spec.get("volumes"))):
        if not isinstance(volume, Mapping):
            continue
        sources = [k for k in volume if k != "name" and volume.get(k) is not None]
        other = [s for s in sources if s not in RESTRICTED_VOLUME_TYPES and s != "hostPath"]
        if other:
            report(
                f"{pod.label}: volume {volume.get('name') or i!r} is of type {', '.join(other)}. "
                "Use a persistentVolumeClaim (backed by a PersistentVolume for NFS, EBS, ...) or one of "
                f"{', '.join(sorted(RESTRICTED_VOLUME_TYPES))}.",
            )


@pod_check
def validate_no_privilege_escalation(pod: Pod, report: Report) -> None:
    if pod.windows or pod.baseline:
        return
    for c in pod.containers:
        if c.context("allowPrivilegeEscalation") is not False:
            report(
                f"{pod.label}: {c.label} allows privilege escalation (the default when unset). "
                "Set securityContext.allowPrivilegeEscalation: false.",
            )


@pod_check
def validate_run_as_non_root(pod: Pod, report: Report) -> None:
    if pod.baseline:
        return
    fix = f"Set {pod.path}.securityContext.runAsNonRoot: true."
    pod_non_root = pod.context("runAsNonRoot")
    if pod_non_root is False:
        report(f"{pod.label}: {pod.path}.securityContext.runAsNonRoot is false. {fix}")
    if _is_root_uid(pod.context("runAsUser")):
        report(f"{pod.label}: {pod.path}.securityContext.runAsUser is 0 (root). Set a non-zero runAsUser.")
    for c in pod.containers:
        if _is_root_uid(c.context("runAsUser")):
            report(f"{pod.label}: {c.label} runs as UID 0 (root). Set securityContext.runAsUser to a non-zero UID.")
        non_root = c.context("runAsNonRoot")
        if non_root is False:
            report(f"{pod.label}: {c.label} sets runAsNonRoot: false. Remove it from the container. {fix}")
        elif non_root is None and pod_non_root is None:
            report(
                f"{pod.label}: {c.label} is not required to run as non-root (runAsNonRoot unset on the container "
                f"and the pod; a non-zero runAsUser does not count). {fix}",
            )


def _is_root_uid(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == 0


# --- container hygiene ---------------------------------------------------------------------------------
@pod_check
def validate_resources(pod: Pod, report: Report) -> None:
    for c in pod.containers:
        if c.kind == "ephemeralContainer":
            continue  # the API refuses resources on ephemeral containers
        missing = [
            f"{section}.{resource}"
            for section in ("requests", "limits")
            for resource in ("cpu", "memory")
            if get(c.spec, "resources", section, resource) in (None, "")
        ]
        if missing:
            report(
                f"{pod.label}: {c.label} has no resources.{', resources.'.join(missing)}. "
                "Set CPU and memory requests and limits.",
            )


def image_tag_problem(image: Any) -> str | None:
    """Why an image reference is not pinned (no tag, or `latest`), or None if it has a tag or digest."""
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    ref = image.strip()
    if "@" in ref:
        digest = ref.split("@", 1)[1]
        return None if re.fullmatch(r"[a-z0-9]+:[a-fA-F0-9]{32,}", digest) else f"has a malformed digest ({ref})"
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"uses {ref} without a tag (Kubernetes pulls :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag.lower() == "latest" or not tag:
        return f"uses the floating tag of {ref}"
    return None


@pod_check
def validate_pinned_images(pod: Pod, report: Report) -> None:
    for c in pod.containers:
        problem = image_tag_problem(c.spec.get("image"))
        if problem:
            report(f"{pod.label}: {c.label} {problem}. Pin a version tag (e.g. :3.3.2) or a digest (@sha256:...).")


# --- exposure ---------------------------------------------------------------------------------------------
WEB_PORTS = (80, 443)
EXPOSED_SERVICE_TYPES = ("LoadBalancer", "NodePort")
DEFAULT_INGRESS_CONTROLLERS = ("traefik", "ingress-nginx")
# The label keys charts put on an ingress controller's pods (a Service selects on one of them).
CONTROLLER_LABELS = ("app.kubernetes.io/name", "app")
TRAEFIK_WEB_ENTRYPOINTS = ("web", "websecure")


def _port_numbers(ports: Any) -> Iterator[tuple[str, Any]]:
    for i, port in enumerate(as_list(ports)):
        yield str(get(port, "name") or i), get(port, "port")


def validate_external_exposure(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in HELM_TYPES:
        _helm_exposure(args, report)
        return
    if group_kind(args.resource_type) != "core:Service":
        return
    label = f"Service {k8s_name(args.props, args.name)}"
    service_type = get(args.props, "spec", "type") or "ClusterIP"
    external_ips = as_list(get(args.props, "spec", "externalIPs"))
    if service_type not in EXPOSED_SERVICE_TYPES and not external_ips:
        return
    how = f"type {service_type}" if service_type in EXPOSED_SERVICE_TYPES else "externalIPs"
    controllers = [str(c) for c in as_list(args.get_config().get("ingressControllers"))] or list(
        DEFAULT_INGRESS_CONTROLLERS
    )
    selector = get(args.props, "spec", "selector")
    selected = {str(get(selector, key)) for key in CONTROLLER_LABELS if get(selector, key) is not None}
    if not selected & set(controllers):
        report(
            f"{label} is exposed outside the cluster ({how}) but does not select the ingress controller "
            f"({', '.join(controllers)}). Set spec.type: ClusterIP and publish it through an Ingress.",
            None,
        )
        return
    ports = _port_numbers(get(args.props, "spec", "ports"))
    other = [f"{name} ({show_number(number)})" for name, number in ports if _not_web(number)]
    if other:
        report(
            f"{label} exposes port(s) {', '.join(other)} outside the cluster ({how}). "
            "Keep only the web ports 80 and 443 on the exposed Service; move the others to a ClusterIP Service.",
            None,
        )


def _not_web(number: Any) -> bool:
    return not (isinstance(number, (int, float)) and number in WEB_PORTS)


def _chart_name(chart: Any) -> str:
    return str(chart or "").rstrip("/").rsplit("/", 1)[-1]


def _service_types(values: Any, path: str = "values") -> Iterator[tuple[str, Any]]:
    """(path, type) of every `<...>service.type` in Helm values (`service.type`, `apiServer.service.type`...)."""
    if not isinstance(values, Mapping):
        return
    for key, value in known_items(values):
        sub = f"{path}.{key}"
        if isinstance(value, Mapping):
            if str(key).lower().endswith("service") and value.get("type") in EXPOSED_SERVICE_TYPES:
                yield f"{sub}.type", value.get("type")
            yield from _service_types(value, sub)


def _helm_exposure(args: ResourceValidationArgs, report: ReportViolation) -> None:
    chart = _chart_name(args.props.get("chart"))
    if chart == "traefik":
        _traefik_exposure(args, report)
        return
    controllers = [str(c) for c in as_list(args.get_config().get("ingressControllers"))] or list(
        DEFAULT_INGRESS_CONTROLLERS
    )
    if chart in controllers:
        return
    for path, service_type in _service_types(args.props.get("values")):
        report(
            f"Helm release {args.name!r} ({chart}) exposes a Service outside the cluster: {path} is {service_type}. "
            f"Set {path} to ClusterIP and publish the service through an Ingress.",
            None,
        )


def _traefik_exposure(args: ResourceValidationArgs, report: ReportViolation) -> None:
    values = args.props.get("values")
    if (
        get(values, "service", "type") not in (None, *EXPOSED_SERVICE_TYPES)
        or get(values, "service", "enabled") is False
    ):
        return
    ports = get(values, "ports")
    if not isinstance(ports, Mapping):
        return
    for name in ports:
        if name in TRAEFIK_WEB_ENTRYPOINTS:
            continue
        expose = get(ports, name, "expose")
        exposed = truthy(expose) or (isinstance(expose, Mapping) and any(truthy(expose.get(k)) for k in expose))
        if exposed:
            report(
                f"Helm release {args.name!r} (traefik) exposes its {name!r} entry point on the "
                f"{get(values, 'service', 'type') or 'LoadBalancer'} Service. Set ports.{name}.expose to false: only "
                "web and websecure belong outside the cluster.",
                None,
            )


# --- namespaces -------------------------------------------------------------------------------------------
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCING_LEVELS = ("baseline", "restricted")
NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"


def validate_namespace_pod_security(args: StackValidationArgs, report: ReportViolation) -> None:
    levels: dict[str, Any] = {}
    for r in args.resources:
        if r.resource_type != NAMESPACE_TYPE:
            continue
        try:
            name = get(r.props, "metadata", "name")
            level = get(r.props, "metadata", "labels", ENFORCE_LABEL)
        except UnknownValueError:
            continue  # not known yet during preview
        if isinstance(name, str):
            levels[name] = level
        if level not in ENFORCING_LEVELS:
            report(
                f"Namespace {name or r.name!r} does not enforce a Pod Security level (label {ENFORCE_LABEL} is "
                f"{level!r}). Set the label to restricted (or baseline).",
                r.urn,
            )
    for r in args.resources:
        if r.resource_type not in HELM_TYPES:
            continue
        try:
            namespace = r.props.get("namespace")
        except UnknownValueError:
            continue
        if namespace not in levels:
            where = f"namespace {namespace!r}" if namespace else "the provider's default namespace"
            report(
                f"Helm release {r.name!r} deploys into {where}, which this stack does not create, so nothing "
                "guarantees Pod Security Admission checks the pods the chart renders (the policy pack cannot see "
                f"them). Create the namespace in this stack with the label {ENFORCE_LABEL}: restricted (or baseline) "
                "and set the release's namespace to it.",
                r.urn,
            )


def validate_declared_baseline_pods(args: StackValidationArgs, report: ReportViolation) -> None:
    """A pod that declares the baseline level runs only in a namespace this stack creates enforcing baseline."""
    levels: dict[str, Any] = {}
    for r in args.resources:
        if r.resource_type == NAMESPACE_TYPE:
            try:
                levels[get(r.props, "metadata", "name")] = get(r.props, "metadata", "labels", ENFORCE_LABEL)
            except UnknownValueError:
                continue
    for r in args.resources:
        try:
            pod = pod_of(r.resource_type, r.props, r.name)
            namespace = get(r.props, "metadata", "namespace")
        except UnknownValueError:
            continue
        if pod is None or not pod.baseline:
            continue
        if levels.get(namespace) != "baseline":
            report(
                f"{pod.label} declares {POD_LEVEL_LABEL}: baseline, so the pack holds it to baseline only; its "
                f"namespace {namespace!r} must be created by this stack with {ENFORCE_LABEL}: baseline (it is "
                f"{levels.get(namespace, 'not created by this stack')!r}). Move it there or drop the label.",
                r.urn,
            )


# --- other objects ----------------------------------------------------------------------------------------
def validate_ingress_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if group_kind(args.resource_type) != "networking.k8s.io:Ingress":
        return
    label = f"Ingress {k8s_name(args.props, args.name)}"
    tls = [t for t in as_list(get(args.props, "spec", "tls")) if isinstance(t, Mapping)]
    if not tls:
        report(
            f"{label} serves plain HTTP. "
            "Add spec.tls with the hosts and a secretName (e.g. from a cert-manager Certificate).",
            None,
        )
        return
    covered = {str(h) for t in tls for h in as_list(t.get("hosts"))}
    hosts = [str(h) for r in as_list(get(args.props, "spec", "rules")) if (h := get(r, "host"))]
    uncovered = [
        h for h in hosts if h not in covered and not any(c.startswith("*.") and h.endswith(c[1:]) for c in covered)
    ]
    if uncovered:
        report(
            f"{label}: host(s) {', '.join(uncovered)} are not listed in spec.tls[].hosts. Add them to a TLS entry.",
            None,
        )


def validate_pv_retain(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if group_kind(args.resource_type) != "core:PersistentVolume":
        return
    policy = get(args.props, "spec", "persistentVolumeReclaimPolicy")
    if policy != "Retain":
        shown = "unset" if policy is None else repr(policy)
        report(
            f"PersistentVolume {k8s_name(args.props, args.name)} has reclaim policy {shown}. "
            "Set spec.persistentVolumeReclaimPolicy: Retain so releasing the claim never deletes the data.",
            None,
        )


def validate_pv_no_host_path(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if group_kind(args.resource_type) == "core:PersistentVolume" and get(args.props, "spec", "hostPath") is not None:
        report(
            f"PersistentVolume {k8s_name(args.props, args.name)} is a hostPath volume: any pod that claims it reads "
            "and writes the node's filesystem. Use an NFS, CSI or cloud-disk PersistentVolume instead.",
            None,
        )


# --- Helm ---------------------------------------------------------------------------------------------
# helm.sh/v3:Chart is a client-side component registered without inputs (its rendered objects are
# checked by the Kubernetes policies); v3 Release and the v4 Chart component carry chart and version.
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def validate_helm_chart_version(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in HELM_TYPES:
        return
    chart = args.props.get("chart")
    if isinstance(chart, str) and chart.startswith(("./", "../", "/")):
        return  # a chart directory in this repository is pinned by the commit
    version = args.props.get("version")
    if not isinstance(version, str) or not EXACT_VERSION.match(version.strip()):
        shown = "no version" if version in (None, "") else f"version {version!r}"
        report(
            f"Helm chart {chart!r} ({kind(args.resource_type)} {args.name!r}) has {shown}: every `pulumi up` may "
            "install whatever the repository serves then. Set version to an exact chart version (e.g. '1.2.3').",
            None,
        )


def is_pod_bearing(resource_type: str) -> bool:
    return (group_kind(resource_type) or "") in POD_TEMPLATE_PATHS
