"""Security contexts that satisfy Pod Security `restricted`, shared by the components that render
pods themselves (no ComponentResource here)."""

from __future__ import annotations

from pulumi_kubernetes.core.v1 import CapabilitiesArgs, PodSecurityContextArgs, SeccompProfileArgs, SecurityContextArgs


def restricted_pod(uid: int) -> PodSecurityContextArgs:
    """Non-root pod with the runtime's default seccomp profile; volumes group-owned by `uid`."""
    return PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
    )


def restricted_container(uid: int, read_only_root: bool = False) -> SecurityContextArgs:
    """Non-root, unprivileged container without capabilities or privilege escalation."""
    return SecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        privileged=False,
        allow_privilege_escalation=False,
        read_only_root_filesystem=read_only_root,
        capabilities=CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
    )
