"""Kubernetes RBAC policies: least privilege for the roles and bindings the program creates.

`k8s-rbac-no-wildcard-roles`: a Role or ClusterRole lists its verbs and resources; `*` in either grants
whatever the API server adds later. `k8s-rbac-no-admin-bindings`: no RoleBinding or ClusterRoleBinding gives a
ServiceAccount (a workload) `cluster-admin` or a role of this stack whose rules grant `*` verbs on `*` resources.
`k8s-rbac-no-anonymous-bindings`: no binding names `system:anonymous`, `system:unauthenticated` or
`system:authenticated` (everyone who can reach the API server). Helm charts' own RBAC is rendered inside the
provider and cannot be seen (see policy/kubernetes.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

from policy.common import UnknownValueError, as_list, get, group_kind, k8s_name

RBAC = "rbac.authorization.k8s.io"
ROLE_KINDS = (f"{RBAC}:Role", f"{RBAC}:ClusterRole")
BINDING_KINDS = (f"{RBAC}:RoleBinding", f"{RBAC}:ClusterRoleBinding")
ADMIN_ROLE = "cluster-admin"
# (subject kind, name): everyone who can reach the API server, with or without credentials.
EVERYONE = (
    ("Group", "system:anonymous"),
    ("Group", "system:unauthenticated"),
    ("Group", "system:authenticated"),
    ("User", "system:anonymous"),
)


def _rules(props: Mapping[str, Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for i, rule in enumerate(as_list(props.get("rules"))):
        if isinstance(rule, Mapping):
            yield i, rule


def _wild(rule: Mapping[str, Any], key: str) -> bool:
    return "*" in [str(v) for v in as_list(rule.get(key))]


def grants_everything(props: Mapping[str, Any]) -> bool:
    """Some rule grants `*` verbs on `*` resources (what cluster-admin is)."""
    return any(_wild(rule, "verbs") and _wild(rule, "resources") for _, rule in _rules(props))


def validate_no_wildcard_roles(args: ResourceValidationArgs, report: ReportViolation) -> None:
    gk = group_kind(args.resource_type)
    if gk not in ROLE_KINDS:
        return
    label = f"{gk.split(':')[1]} {k8s_name(args.props, args.name)}"
    for i, rule in _rules(args.props):
        wild = [key for key in ("verbs", "resources") if _wild(rule, key)]
        if wild:
            report(
                f"{label}: rules[{i}] grants '*' {' and '.join(wild)}. "
                "List the verbs and resources the workload needs (e.g. verbs: [get, list, watch], resources: [pods]).",
                None,
            )


def _binding_label(resource_type: str, props: Mapping[str, Any], name: str) -> str:
    return f"{(group_kind(resource_type) or ':').split(':')[1]} {k8s_name(props, name)}"


def validate_no_anonymous_bindings(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if group_kind(args.resource_type) not in BINDING_KINDS:
        return
    for subject in as_list(args.props.get("subjects")):
        who = (get(subject, "kind"), get(subject, "name"))
        if who in EVERYONE:
            report(
                f"{_binding_label(args.resource_type, args.props, args.name)} binds {who[0]} {who[1]!r} "
                f"(anyone who can reach the API server) to {get(args.props, 'roleRef', 'name')!r}. "
                "Remove that subject and bind the ServiceAccount, user or group that needs the role.",
                None,
            )


def _role_key(kind: Any, namespace: Any, name: Any) -> tuple[str, str, str]:
    return (str(kind), str(namespace or "") if kind == "Role" else "", str(name))


def _admin_roles(args: StackValidationArgs) -> set[tuple[str, str, str]]:
    """The roles of this stack (kind, namespace, name) whose rules grant everything, and cluster-admin."""
    found = {("ClusterRole", "", ADMIN_ROLE)}
    for r in args.resources:
        gk = group_kind(r.resource_type)
        if gk not in ROLE_KINDS:
            continue
        try:
            if grants_everything(r.props):
                meta = get(r.props, "metadata")
                found.add(_role_key(gk.split(":")[1], get(meta, "namespace"), get(meta, "name")))
        except UnknownValueError:
            continue
    return found


def _service_accounts(props: Mapping[str, Any]) -> list[str]:
    return [
        f"{get(s, 'namespace') or '?'}/{get(s, 'name')}"
        for s in as_list(props.get("subjects"))
        if get(s, "kind") == "ServiceAccount"
    ]


def validate_no_admin_bindings(args: StackValidationArgs, report: ReportViolation) -> None:
    admin = _admin_roles(args)
    for r in args.resources:
        if group_kind(r.resource_type) not in BINDING_KINDS:
            continue
        try:
            ref = get(r.props, "roleRef")
            key = _role_key(get(ref, "kind"), get(r.props, "metadata", "namespace"), get(ref, "name"))
            accounts = _service_accounts(r.props)
        except UnknownValueError:
            continue
        if key in admin and accounts:
            report(
                f"{_binding_label(r.resource_type, r.props, r.name)} gives ServiceAccount(s) {', '.join(accounts)} "
                f"{key[0]} {key[2]!r}, which may do anything ('*' verbs on '*' resources). "
                "Use a role that lists only the verbs and resources the workload needs.",
                r.urn,
            )
