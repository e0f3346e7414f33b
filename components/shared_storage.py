"""Shared NFS storage: statically provisioned volumes and the claims bound to exactly them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.core.v1 import (
    NFSVolumeSourceArgs,
    ObjectReferenceArgs,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeSpecArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.naming import labels, stack_name


@dataclass(frozen=True)
class NfsVolume:
    """One volume: the claim's name and namespace, its sub-directory of the export, its size."""

    claim: str
    namespace: str
    subdirectory: str
    size: str


@dataclass(frozen=True)
class SharedStorageArgs:
    stack: str
    server: str
    path: str
    mount_options: Sequence[str]
    volumes: Mapping[str, NfsVolume]
    protect: bool = True


class SharedStorage(pulumi.ComponentResource):
    """Builds, per volume, a PersistentVolume on the NFS export (ReadWriteMany, reclaim policy
    `Retain`, explicit mount options, empty storage class so no provisioner touches it, and a
    `claimRef` reserving it for its claim) and a PersistentVolumeClaim bound to exactly that volume
    by `volumeName`. Volumes and claims are protected and retained on delete: `pulumi destroy` or a
    refactor never removes the data.

    Exports the attributes below.
    """

    claims: dict[str, str]
    """Volume -> its claim's name."""
    volumes: dict[str, str]
    """Volume -> its PersistentVolume's name."""

    def __init__(self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:SharedStorage", name, None, opts)
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=True)
        self.claims = {}
        self.volumes = {}
        for key, vol in args.volumes.items():
            pv_name = stack_name(args.stack, key)
            PersistentVolume(
                f"{name}-{key}-pv",
                metadata=ObjectMetaArgs(name=pv_name, labels=labels(stack=args.stack, volume=key)),
                spec=PersistentVolumeSpecArgs(
                    capacity={"storage": vol.size},
                    access_modes=["ReadWriteMany"],
                    persistent_volume_reclaim_policy="Retain",
                    storage_class_name="",
                    volume_mode="Filesystem",
                    mount_options=list(args.mount_options),
                    nfs=NFSVolumeSourceArgs(server=args.server, path=f"{args.path.rstrip('/')}/{vol.subdirectory}"),
                    claim_ref=ObjectReferenceArgs(
                        kind="PersistentVolumeClaim", api_version="v1", name=vol.claim, namespace=vol.namespace
                    ),
                ),
                opts=keep,
            )
            PersistentVolumeClaim(
                f"{name}-{key}-pvc",
                metadata=ObjectMetaArgs(name=vol.claim, namespace=vol.namespace, labels=labels(stack=args.stack)),
                spec=PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteMany"],
                    storage_class_name="",
                    volume_name=pv_name,
                    resources=VolumeResourceRequirementsArgs(requests={"storage": vol.size}),
                ),
                opts=keep,
            )
            self.claims[key] = vol.claim
            self.volumes[key] = pv_name
        self.register_outputs({"claims": self.claims, "volumes": self.volumes})
