"""Settings group `nfs.*`: the NFS (or EFS) log volumes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from stacks.settings.engine import check_quantity, setting


@dataclass(frozen=True)
class NfsSettings:
    server: str = setting("nfs.server", "NFS server (host name or IP)", required=True, pattern=r"^[A-Za-z0-9.-]+$")
    path: str = setting("nfs.path", "exported base path; volumes live in sub-directories", required=True, pattern=r"^/")
    mount_options: tuple[str, ...] = setting(
        "nfs.mountOptions",
        "NFS mount options",
        default=("nfsvers=4.1", "hard", "timeo=600", "retrans=2", "noresvport"),
        check=lambda v: None if v else "must not be empty",
    )
    serving_logs_size: str = setting(
        "nfs.servingLogsSize", "capacity of the serving log volume", default="10Gi", check=check_quantity
    )
    airflow_logs_size: str = setting(
        "nfs.airflowLogsSize", "capacity of the Airflow log volume", default="20Gi", check=check_quantity
    )
    mode: Literal["nfs", "efsAccessPoint"] = setting(
        "nfs.mode",
        "nfs = volumes are sub-directories of nfs.path, created with the pods' ownership by a one-shot Job per volume "
        "(the export must let root chown: no_root_squash, or EFS); efsAccessPoint = one EFS access point per "
        "volume (POSIX user and root directory enforced by EFS; needs the EFS CSI driver on the cluster)",
        default="nfs",
        choices=("nfs", "efsAccessPoint"),
    )
    efs_file_system_id: str | None = setting(
        "nfs.efsFileSystemId",
        "EFS file system of the access points (efsAccessPoint); default: the fs-... of nfs.server when it is an "
        "EFS DNS name",
        pattern=r"^fs-[0-9a-f]{8,40}$",
    )

    @property
    def file_system_id(self) -> str | None:
        """The EFS file system: nfs.efsFileSystemId, else the one nfs.server names (fs-....efs.<region>...)."""
        if self.efs_file_system_id:
            return self.efs_file_system_id
        match = re.match(r"^(fs-[0-9a-f]{8,40})\.efs\.", self.server)
        return match.group(1) if match else None
