"""Run-once Jobs that run again when their inputs change, shared by the components that need one
(the database bootstrap, MLflow's client user). No ComponentResource here.

A Job's pod template is immutable, so the Job carries a digest of its inputs as a pod-template
annotation: new inputs make a new template, Pulumi replaces the Job (delete before replace, since the
name stays) and `pulumi up` runs it again. The pod runs under Pod Security `restricted`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
from pulumi_kubernetes.batch.v1 import Job, JobSpecArgs
from pulumi_kubernetes.core.v1 import ContainerArgs, PodSpecArgs, PodTemplateSpecArgs, VolumeArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.pod_security import restricted_pod


def rerun_on_change_job(
    resource_name: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    digest_annotation: str,
    digest: pulumi.Input[str],
    uid: int,
    container: ContainerArgs,
    volumes: Sequence[VolumeArgs],
    backoff_limit: int,
    deadline_seconds: int,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
) -> Job:
    """A Job named `name` that runs `container` (with `volumes`) once, and again whenever `digest` changes."""
    return Job(
        resource_name,
        metadata=ObjectMetaArgs(name=name, namespace=namespace, labels=dict(labels)),
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
