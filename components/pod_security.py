"""Security contexts that satisfy Pod Security `restricted`, shared by the components that render
pods themselves (no ComponentResource here): every container runs with a read-only root filesystem, writing only
to the emptyDirs `scratch` gives it, and takes its credentials as files (`secret_volume`, `secret_mount`,
`file_env`: the contract's `<NAME>_FILE` convention), never as environment values or arguments. The harness checks
both over every pod of the stacks (harness/checks.py)."""

from __future__ import annotations

from collections.abc import Mapping

from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    KeyToPathArgs,
    PodSecurityContextArgs,
    SeccompProfileArgs,
    SecretVolumeSourceArgs,
    SecurityContextArgs,
    VolumeArgs,
    VolumeMountArgs,
)

from services.common import contract


def restricted_pod(uid: int) -> PodSecurityContextArgs:
    """Non-root pod with the runtime's default seccomp profile; volumes group-owned by `uid`."""
    return PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
    )


def restricted_container(uid: int, read_only_root: bool = True) -> SecurityContextArgs:
    """Non-root, unprivileged container without capabilities or privilege escalation, read-only root filesystem."""
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


# --- credentials as files, scratch space for read-only root filesystems -------------------------------------------
SECRET_FILE_MODE = 0o440  # owner and the pod's fsGroup read; nobody else


def secret_volume(
    volume: str, secret: str, *, optional: bool = False, items: Mapping[str, str] | None = None
) -> VolumeArgs:
    """A Secret as files (key -> file, or only `items`: key -> path), readable by the pod's user and group only. Its
    files follow the Secret's updates (no subPath), so a rotation shows without a restart."""
    return VolumeArgs(
        name=volume,
        secret=SecretVolumeSourceArgs(
            secret_name=secret,
            default_mode=SECRET_FILE_MODE,
            optional=optional or None,
            items=[KeyToPathArgs(key=k, path=p) for k, p in items.items()] if items else None,
        ),
    )


MLFLOW_CREDENTIALS_VOLUME = "mlflow-credentials"


def mlflow_credentials_volume(secret: str) -> VolumeArgs:
    """MLflow's credentials file (the Secret's MLFLOW_CREDENTIALS_KEY), optional: the Secret is empty when MLflow has
    no basic auth. Mount it with `mlflow_credentials_mount`."""
    key = contract.MLFLOW_CREDENTIALS_KEY
    return secret_volume(MLFLOW_CREDENTIALS_VOLUME, secret, optional=True, items={key: key})


def mlflow_credentials_mount(home: str) -> VolumeMountArgs:
    """Where MLflow's client reads its credentials file: $HOME/.mlflow (`home` is the container's $HOME)."""
    path = str(contract.mlflow_credentials_file(home).parent)
    return VolumeMountArgs(name=MLFLOW_CREDENTIALS_VOLUME, mount_path=path, read_only=True)


def secret_mount(volume: str, secret: str) -> VolumeMountArgs:
    """Where `secret_volume` is mounted the platform's way: contract.secret_file(secret, key) is each key's file."""
    return VolumeMountArgs(name=volume, mount_path=contract.secret_file(secret, "").rstrip("/"), read_only=True)


def file_env(var: contract.EnvVar, secret: str, key: str | None = None) -> EnvVarArgs:
    """`<NAME>_FILE` naming the file of `key` (the variable's name by default) of a Secret mounted by `secret_mount`."""
    return EnvVarArgs(name=var.file_variable, value=contract.secret_file(secret, key or var.name))


def scratch(volume: str, path: str, size: str = "256Mi") -> tuple[VolumeArgs, VolumeMountArgs]:
    """Writable scratch space (an emptyDir) at `path` for a container with a read-only root filesystem."""
    return (
        VolumeArgs(name=volume, empty_dir=EmptyDirVolumeSourceArgs(size_limit=size)),
        VolumeMountArgs(name=volume, mount_path=path),
    )
