"""Run-once Jobs that run again when their inputs change, shared by the components that need one
(the database bootstrap, MLflow's client user). No ComponentResource here.

A Job's pod template is immutable, so the Job carries a digest of its inputs as a pod-template
annotation: new inputs make a new template, Pulumi replaces the Job (delete before replace, since the
name stays) and `pulumi up` runs it again. The pod runs under Pod Security `restricted`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi_kubernetes.batch.v1 import Job, JobSpecArgs
from pulumi_kubernetes.core.v1 import ContainerArgs, PodSpecArgs, PodTemplateSpecArgs, VolumeArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.namespaces import NamespaceRef
from components.pod_security import restricted_pod


def inputs_digest(parts: Sequence[object]) -> str:
    """A digest of everything a Job applies (script or SQL, server, passwords): 16 hex characters of
    SHA-256 over the parts' text. SHA-256 of 190-bit random passwords reveals nothing about them."""
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:16]


def rerun_on_change_job(
    resource_name: str,
    *,
    name: str,
    namespace: NamespaceRef,
    labels: Mapping[str, str],
    digest_annotation: str,
    inputs: Sequence[pulumi.Input[Any]],
    uid: int,
    container: ContainerArgs,
    volumes: Sequence[VolumeArgs],
    backoff_limit: int,
    deadline_seconds: int,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
) -> Job:
    """A Job named `name` that runs `container` (with `volumes`) once, and again whenever one of its
    `inputs` changes: their `inputs_digest` (not secret) is the pod template's `digest_annotation`. It waits for its
    namespace (by construction) and for `depends_on`: what it works on (the Secrets and ConfigMaps it mounts, the
    server it talks to; `harness.order` checks it)."""
    digest = pulumi.Output.unsecret(pulumi.Output.all(*inputs).apply(inputs_digest))
    return Job(
        resource_name,
        metadata=ObjectMetaArgs(name=name, namespace=namespace.output, labels=dict(labels)),
        spec=JobSpecArgs(
            backoff_limit=backoff_limit,
            active_deadline_seconds=deadline_seconds,
            template=PodTemplateSpecArgs(
                metadata=ObjectMetaArgs(labels=dict(labels), annotations={digest_annotation: digest}),
                spec=PodSpecArgs(
                    restart_policy="OnFailure",
                    automount_service_account_token=False,
                    security_context=restricted_pod(uid),
                    containers=[container],
                    volumes=list(volumes),
                ),
            ),
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on), delete_before_replace=True),
    )
