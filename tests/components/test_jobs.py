"""The run-again-on-change Job helper: its inputs digest, and the Job it renders under mocks (the
digest on the pod template, not secret even when an input is, replaced delete-before-create)."""

from __future__ import annotations

import re

import pulumi
from pulumi_kubernetes.core.v1 import ContainerArgs

from components.jobs import inputs_digest, rerun_on_change_job
from components.namespaces import NamespaceRef
from harness.mocks import SecretValue, reveal
from harness.run import run_under_mocks

PASSWORD = "k3JpQ9vXw2LmN8rTz5YhB7cD4fGs6aEu"


def test_digest_is_short_hex_and_stable() -> None:
    digest = inputs_digest(["SELECT 1", "db.example", 5432, PASSWORD])
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert inputs_digest(["SELECT 1", "db.example", 5432, PASSWORD]) == digest


def test_digest_changes_with_any_input_and_with_their_order() -> None:
    parts: list[object] = ["SELECT 1", "db.example", 5432, PASSWORD]
    digest = inputs_digest(parts)
    for i in range(len(parts)):
        assert inputs_digest([f"{p}x" if j == i else p for j, p in enumerate(parts)]) != digest
    assert inputs_digest(["a", "b"]) != inputs_digest(["b", "a"])
    assert inputs_digest(["ab", "c"]) != inputs_digest(["a", "bc"])  # parts are separated


def test_job_carries_the_digest_of_its_inputs_and_is_replaced_before_it_is_recreated() -> None:
    def body() -> None:
        parent = pulumi.ComponentResource("test:index:Parent", "parent")
        rerun_on_change_job(
            "job",
            name="bootstrap-x",
            namespace=NamespaceRef("ns"),
            labels={"app.kubernetes.io/part-of": "mlops-platform"},
            digest_annotation="mlops-platform/test-inputs",
            inputs=["script", pulumi.Output.from_input(5432), pulumi.Output.secret(PASSWORD)],
            uid=1001,
            container=ContainerArgs(name="c", image="busybox:1.37"),
            volumes=[],
            backoff_limit=3,
            deadline_seconds=60,
            parent=parent,
            depends_on=[],
        )

    run = run_under_mocks("dev", body)
    (job,) = run.of_type("kubernetes:batch/v1:Job")
    annotation = job.inputs["spec"]["template"]["metadata"]["annotations"]["mlops-platform/test-inputs"]
    assert not isinstance(annotation, SecretValue)
    assert annotation == inputs_digest(["script", 5432, PASSWORD])
    assert PASSWORD not in str(reveal(job.inputs))
    assert job.delete_before_replace
    assert job.parent == run.named("parent").urn
    pod = job.manifest["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1001
