"""Shared NFS storage: statically provisioned volumes, the claims bound to exactly them, their directories prepared
with the ownership of the pods that write them, and their old files pruned."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_aws import efs
from pulumi_kubernetes.batch.v1 import (
    CronJob,
    CronJobSpecArgs,
    Job,
    JobSpecArgs,
    JobTemplateSpecArgs,
)
from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    ContainerArgs,
    CSIPersistentVolumeSourceArgs,
    NFSVolumeSourceArgs,
    ObjectReferenceArgs,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PersistentVolumeSpecArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ResourceRequirementsArgs,
    SeccompProfileArgs,
    SecurityContextArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.namespaces import NamespaceRef
from components.naming import labels, platform_key, stack_name
from components.pod_security import restricted_container, restricted_pod

EFS_CSI_DRIVER = "efs.csi.aws.com"
EXPORT_CLAIM = "nfs-export"  # the export's root, in the preparation namespace
EXPORT_MOUNT = "/export"
DATA_MOUNT = "/data"
DIRECTORY_MODE = "0770"  # owner and group: the pods' uid and gid
# The only capabilities the preparation runs with (as root): create the directory in a root-owned export
# (DAC_OVERRIDE when the export is not root's), hand it over (CHOWN), set its mode again on a re-run (FOWNER).
PREPARE_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
PREPARE_INPUTS_ANNOTATION = platform_key("prepare-inputs")
PRUNE_SCHEDULE = "23 3 * * *"
_SMALL = ResourceRequirementsArgs(requests={"cpu": "10m", "memory": "16Mi"}, limits={"cpu": "200m", "memory": "64Mi"})


@dataclass(frozen=True)
class NfsVolume:
    """One volume: the claim's name and namespace, its sub-directory of the export, its size, the uid and gid of the
    pods that write it, and the age in days after which its files are deleted (None: kept)."""

    claim: str
    namespace: NamespaceRef
    subdirectory: str
    size: str
    uid: int
    gid: int
    prune_days: int | None = None


@dataclass(frozen=True)
class SharedStorageArgs:
    """`mode`: "nfs" (sub-directories of `path` on `server`; with `prepare_namespace`, a one-shot Job there creates
    each with its owner) or "efsAccessPoint" (one EFS access point of `file_system_id` per volume). `image`: a
    pinned image with a POSIX shell, mkdir, chown, chmod and find (the preparation and pruning)."""

    stack: str
    server: str
    path: str
    mount_options: Sequence[str]
    volumes: Mapping[str, NfsVolume]
    image: str
    protect: bool = True
    mode: str = "nfs"
    prepare_namespace: NamespaceRef | None = None
    file_system_id: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("nfs", "efsAccessPoint"):
            raise ValueError(f"unknown storage mode {self.mode!r}")
        if self.mode == "efsAccessPoint" and not self.file_system_id:
            raise ValueError("efsAccessPoint needs the EFS file system id")

    def directory(self, volume: NfsVolume) -> str:
        return f"{self.path.rstrip('/')}/{volume.subdirectory}"


def prepare_script(volume: NfsVolume) -> str:
    """Shell run as root in the preparation Job: the volume's directory under the export's root, owned by its pods'
    uid and gid, mode 0770. Idempotent."""
    d = f"{EXPORT_MOUNT}/{volume.subdirectory}"
    return (
        f'set -eu; mkdir -p "{d}"; chown {volume.uid}:{volume.gid} "{d}"; chmod {DIRECTORY_MODE} "{d}"; ls -ldn "{d}"'
    )


def prune_script(days: int) -> str:
    """Shell run by the pruning CronJob: files older than `days` days, then the directories left empty as long."""
    return (
        f"set -eu; find {DATA_MOUNT} -mindepth 1 -type f -mtime +{days} -print -delete; "
        f"find {DATA_MOUNT} -mindepth 1 -type d -empty -mtime +{days} -print -delete"
    )


class SharedStorage(pulumi.ComponentResource):
    """Builds, per volume, a PersistentVolume (ReadWriteMany, reclaim policy `Retain`, empty storage class so no
    provisioner touches it, a `claimRef` reserving it for its claim) and a PersistentVolumeClaim bound to exactly
    that volume by `volumeName`. Volumes and claims are protected and retained on delete: `pulumi destroy` or a
    refactor never removes the data.

    - mode nfs: the volume is the export's sub-directory. With `prepare_namespace`, a volume and claim of the
      export's root there and, per volume, a Job that creates the sub-directory owned by the volume's uid and gid
      (mode 0770): root with only CHOWN, DAC_OVERRIDE and FOWNER, no privilege escalation, RuntimeDefault seccomp,
      read-only root filesystem (the namespace must admit root: Pod Security baseline). It runs again when its
      inputs change. `ready[volume]` is that Job: what mounts the volume waits for it.
    - mode efsAccessPoint: per volume an EFS access point whose POSIX user is the volume's uid and gid and whose
      root directory EFS creates with that owner (0770); the volume mounts it through the EFS CSI driver.
      `ready[volume]` is the access point.
    - Per volume with `prune_days`: a daily CronJob in the claim's namespace, as the volume's uid (Pod Security
      restricted), that deletes the files older than that and the directories left empty.

    Exports the attributes below; `ready` holds handles, not outputs.
    """

    claims: dict[str, str]
    """Volume -> its claim's name."""
    volumes: dict[str, str]
    """Volume -> its PersistentVolume's name."""

    def __init__(self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:SharedStorage", name, None, opts)
        self._name = name
        self._keep = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=True)
        self.claims = {}
        self.volumes = {}
        self.ready: dict[str, pulumi.Resource] = {}
        prepare = args.prepare_namespace if args.mode == "nfs" else None
        export = self._export(args, prepare) if prepare is not None else None
        for key, vol in args.volumes.items():
            if args.mode == "efsAccessPoint":
                access_point = self._access_point(key, args, vol)
                source = self._volume(key, args, vol, access_point)
                self.ready[key] = access_point
            else:
                source = self._volume(key, args, vol, None)
                if prepare is not None and export is not None:
                    self.ready[key] = self._prepare(key, args, vol, prepare, export)
            if vol.prune_days is not None:
                self._prune(key, args, vol, [source, *([self.ready[key]] if key in self.ready else [])])
            self.claims[key] = vol.claim
            self.volumes[key] = stack_name(args.stack, key)
        self.register_outputs({"claims": self.claims, "volumes": self.volumes})

    def _volume(
        self, key: str, args: SharedStorageArgs, vol: NfsVolume, access_point: efs.AccessPoint | None
    ) -> PersistentVolumeClaim:
        """The PersistentVolume (NFS, or the access point through the EFS CSI driver) and its claim."""
        pv_name = stack_name(args.stack, key)
        if access_point is None:
            source: dict[str, object] = {
                "nfs": NFSVolumeSourceArgs(server=args.server, path=args.directory(vol)),
                "mount_options": list(args.mount_options),
            }
        else:
            handle = pulumi.Output.concat(str(args.file_system_id), "::", access_point.id)
            source = {
                "csi": CSIPersistentVolumeSourceArgs(driver=EFS_CSI_DRIVER, volume_handle=handle),
                "mount_options": ["tls"],
            }
        PersistentVolume(
            f"{self._name}-{key}-pv",
            metadata=ObjectMetaArgs(name=pv_name, labels=labels(stack=args.stack, volume=key)),
            spec=PersistentVolumeSpecArgs(
                capacity={"storage": vol.size},
                access_modes=["ReadWriteMany"],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                volume_mode="Filesystem",
                claim_ref=ObjectReferenceArgs(
                    kind="PersistentVolumeClaim", api_version="v1", name=vol.claim, namespace=vol.namespace.name
                ),
                **source,  # type: ignore[arg-type]
            ),
            opts=self._keep,
        )
        return PersistentVolumeClaim(
            f"{self._name}-{key}-pvc",
            metadata=ObjectMetaArgs(name=vol.claim, namespace=vol.namespace.output, labels=labels(stack=args.stack)),
            spec=PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteMany"],
                storage_class_name="",
                volume_name=pv_name,
                resources=VolumeResourceRequirementsArgs(requests={"storage": vol.size}),
            ),
            opts=self._keep,
        )

    def _access_point(self, key: str, args: SharedStorageArgs, vol: NfsVolume) -> efs.AccessPoint:
        """The volume's EFS access point: every file operation as its uid and gid, rooted at its directory (created
        by EFS with that owner, mode 0770)."""
        return efs.AccessPoint(
            f"{self._name}-{key}-access-point",
            file_system_id=str(args.file_system_id),
            posix_user=efs.AccessPointPosixUserArgs(uid=vol.uid, gid=vol.gid),
            root_directory=efs.AccessPointRootDirectoryArgs(
                path=args.directory(vol),
                creation_info=efs.AccessPointRootDirectoryCreationInfoArgs(
                    owner_uid=vol.uid, owner_gid=vol.gid, permissions=DIRECTORY_MODE
                ),
            ),
            tags={"Name": stack_name(args.stack, key), "mlops-platform/volume": key},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _export(self, args: SharedStorageArgs, namespace: NamespaceRef) -> PersistentVolumeClaim:
        """A volume and claim of the export's root in the preparation namespace (protected, retained)."""
        pv_name = stack_name(args.stack, EXPORT_CLAIM)
        PersistentVolume(
            f"{self._name}-export-pv",
            metadata=ObjectMetaArgs(name=pv_name, labels=labels(stack=args.stack, volume=EXPORT_CLAIM)),
            spec=PersistentVolumeSpecArgs(
                capacity={"storage": "1Mi"},  # the claim only reaches the root to create directories in it
                access_modes=["ReadWriteMany"],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                volume_mode="Filesystem",
                mount_options=list(args.mount_options),
                nfs=NFSVolumeSourceArgs(server=args.server, path=args.path),
                claim_ref=ObjectReferenceArgs(
                    kind="PersistentVolumeClaim", api_version="v1", name=EXPORT_CLAIM, namespace=namespace.name
                ),
            ),
            opts=self._keep,
        )
        return PersistentVolumeClaim(
            f"{self._name}-export-pvc",
            metadata=ObjectMetaArgs(name=EXPORT_CLAIM, namespace=namespace.output, labels=labels(stack=args.stack)),
            spec=PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteMany"],
                storage_class_name="",
                volume_name=pv_name,
                resources=VolumeResourceRequirementsArgs(requests={"storage": "1Mi"}),
            ),
            opts=self._keep,
        )

    def _prepare(
        self, key: str, args: SharedStorageArgs, vol: NfsVolume, namespace: NamespaceRef, export: PersistentVolumeClaim
    ) -> Job:
        """The one-shot Job creating the volume's directory with its owner (named after its inputs: new inputs, a
        new Job that runs again)."""
        script = prepare_script(vol)
        digest = hashlib.sha256(f"{args.server}\0{args.path}\0{script}\0{args.image}".encode()).hexdigest()[:8]
        # chown needs root: the pod declares the baseline level, which its namespace enforces (policy/kubernetes.py)
        job_labels = labels(
            name="nfs-prepare", component="storage", volume=key, base={platform_key("pod-security"): "baseline"}
        )
        container = ContainerArgs(
            name="prepare",
            image=args.image,
            image_pull_policy="IfNotPresent",
            command=["/bin/sh", "-c", script],
            resources=_SMALL,
            security_context=SecurityContextArgs(
                run_as_user=0,
                run_as_group=0,
                run_as_non_root=False,
                privileged=False,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=CapabilitiesArgs(drop=["ALL"], add=list(PREPARE_CAPABILITIES)),
                seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
            ),
            volume_mounts=[VolumeMountArgs(name="export", mount_path=EXPORT_MOUNT)],
        )
        return Job(
            f"{self._name}-{key}-prepare",
            metadata=ObjectMetaArgs(name=f"prepare-{key}-{digest}", namespace=namespace.output, labels=job_labels),
            spec=JobSpecArgs(
                backoff_limit=6,
                active_deadline_seconds=900,
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=job_labels, annotations={PREPARE_INPUTS_ANNOTATION: digest}),
                    spec=PodSpecArgs(
                        restart_policy="OnFailure",
                        automount_service_account_token=False,
                        security_context=PodSecurityContextArgs(
                            seccomp_profile=SeccompProfileArgs(type="RuntimeDefault")
                        ),
                        containers=[container],
                        volumes=[
                            VolumeArgs(
                                name="export",
                                persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(claim_name=EXPORT_CLAIM),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[export], delete_before_replace=True),
        )

    def _prune(self, key: str, args: SharedStorageArgs, vol: NfsVolume, after: list[pulumi.Resource]) -> CronJob:
        """Daily, as the volume's uid: the files older than its `prune_days`, then the empty directories."""
        days = vol.prune_days or 0
        prune_labels = labels(name="log-prune", component="storage", volume=key)
        container = ContainerArgs(
            name="prune",
            image=args.image,
            image_pull_policy="IfNotPresent",
            command=["/bin/sh", "-c", prune_script(days)],
            resources=_SMALL,
            security_context=restricted_container(vol.uid, read_only_root=True),
            volume_mounts=[VolumeMountArgs(name="data", mount_path=DATA_MOUNT)],
        )
        pod = PodTemplateSpecArgs(
            metadata=ObjectMetaArgs(labels=prune_labels),
            spec=PodSpecArgs(
                restart_policy="OnFailure",
                automount_service_account_token=False,
                security_context=restricted_pod(vol.uid),
                containers=[container],
                volumes=[
                    VolumeArgs(
                        name="data",
                        persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(claim_name=vol.claim),
                    )
                ],
            ),
        )
        return CronJob(
            f"{self._name}-{key}-prune",
            metadata=ObjectMetaArgs(name=f"prune-{key}", namespace=vol.namespace.output, labels=prune_labels),
            spec=CronJobSpecArgs(
                schedule=PRUNE_SCHEDULE,
                concurrency_policy="Forbid",
                starting_deadline_seconds=3600,
                successful_jobs_history_limit=1,
                failed_jobs_history_limit=3,
                job_template=JobTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=prune_labels),
                    spec=JobSpecArgs(backoff_limit=2, active_deadline_seconds=3600, template=pod),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
