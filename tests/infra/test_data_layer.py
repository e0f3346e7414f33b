"""The data layer (artifact store, database, NFS) under mocks, plus the real checks:
IAM policies enforced by moto's server, bootstrap SQL against the local PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.exceptions import ClientError

from components.artifact_store import (
    AIRFLOW_LOG_PREFIX,
    MLFLOW_PREFIX,
    ROTATION_EPOCH,
    paths_in_bucket,
    prefix_policy,
    rotation_plan,
)
from components.database import (
    ADMIN_PASSWORD_KEY,
    BOOTSTRAP_INPUTS_ANNOTATION,
    AppDatabase,
    bootstrap_script,
    bootstrap_sql,
    login_role,
    password_sql,
    password_variable,
)
from components.jobs import inputs_digest
from components.logging import LOKI_PREFIX
from components.naming import DB_CREDENTIALS_ANNOTATION
from devstack.moto import moto_s3
from harness import checks
from harness.mocks import SecretValue, reveal
from harness.run import ProgramRun, read_stack_file, run_program
from infra.data_layer import ROTATION_CLOCK_VAR
from stacks.settings import SettingsError, load_settings

STACKS = ["dev", "prod"]
K8S_VERSIONS = ["1.30", checks.LATEST_KUBERNETES]
BUCKET_COMPANIONS = {
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
}


def only(run: ProgramRun, type_: str) -> Any:
    found = run.of_type(type_)
    assert len(found) == 1, f"{len(found)} {type_}"
    return found[0]


# --- artifact store under mocks ------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_bucket_is_hardened(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    bucket = only(run, "aws:s3/bucket:Bucket")
    assert bucket.protect and bucket.inputs["bucketPrefix"] == f"mlops-{stack}-artifacts-"
    assert bucket.inputs.get("forceDestroy") is not True
    companions = {r.type: r for r in run.registrations if r.type in BUCKET_COMPANIONS}
    assert set(companions) == BUCKET_COMPANIONS
    for reg in companions.values():
        assert reg.inputs["bucket"] == bucket.id and reg.protect
    pab = companions["aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"].inputs
    assert all(
        pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    assert companions["aws:s3/bucketOwnershipControls:BucketOwnershipControls"].inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"
    }
    assert (
        companions["aws:s3/bucketVersioning:BucketVersioning"].inputs["versioningConfiguration"]["status"] == "Enabled"
    )
    sse = companions["aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"].inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    policy = json.loads(companions["aws:s3/bucketPolicy:BucketPolicy"].inputs["policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {bucket.outputs["arn"], bucket.outputs["arn"] + "/*"}
    rules = {
        r["id"]: r
        for r in companions["aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"].inputs["rules"]
    }
    days = 30 if stack == "dev" else 90
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": days}
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}
    # Airflow's remote task logs expire after retention.airflowLogsDays, what versioning keeps of them a day later
    assert rules["expire-airflow-logs"] == {
        "id": "expire-airflow-logs",
        "status": "Enabled",
        "filter": {"prefix": AIRFLOW_LOG_PREFIX},
        "expiration": {"days": 30 if stack == "dev" else 90},
        "noncurrentVersionExpiration": {"noncurrentDays": 1},
    }
    assert not any(r["filter"]["prefix"] == MLFLOW_PREFIX for r in rules.values()), "model artifacts never expire"


def test_airflow_log_expiry_follows_its_setting_and_the_logs_location() -> None:
    def rules(run: ProgramRun) -> dict[str, Any]:
        lifecycle = only(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        return {r["id"]: r for r in lifecycle.inputs["rules"]}

    assert rules(run_program("dev", overrides={"retention.airflowLogsDays": "3"}))["expire-airflow-logs"][
        "expiration"
    ] == {"days": 3}
    # task logs on the NFS volume instead: no bucket rule (the volume's pruning CronJob applies the days)
    assert "expire-airflow-logs" not in rules(run_program("dev", overrides={"airflow.remoteLogging": "false"}))


def test_kms_key_switches_to_sse_kms() -> None:
    arn = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-0000-1111-2222-333344445555"
    run = run_program("dev", overrides={"artifacts.kmsKeyArn": arn})
    sse = only(run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": arn}
    assert sse["rules"][0]["bucketKeyEnabled"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_each_consumer_gets_its_own_prefix_only(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    bucket_arn = only(run, "aws:s3/bucket:Bucket").outputs["arn"]
    policies = {r.name: json.loads(r.inputs["policy"]) for r in run.of_type("aws:iam/userPolicy:UserPolicy")}
    assert set(policies) == {"artifacts-mlflow-policy", "artifacts-airflow-policy", "artifacts-loki-policy"}
    assert policies["artifacts-mlflow-policy"] == prefix_policy(bucket_arn, MLFLOW_PREFIX)
    assert policies["artifacts-airflow-policy"] == prefix_policy(bucket_arn, AIRFLOW_LOG_PREFIX)
    assert policies["artifacts-loki-policy"] == prefix_policy(bucket_arn, LOKI_PREFIX)
    for doc in policies.values():
        for statement in doc["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a in ("*", "s3:*") for a in actions)
            assert statement["Resource"] != "*"
    listing = next(st for st in policies["artifacts-mlflow-policy"]["Statement"] if st["Sid"] == "ListUnderPrefix")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["mlflow/", "mlflow/*"]}}
    assert not run.of_type("aws:iam/userPolicyAttachment:UserPolicyAttachment"), (
        "no managed policies (AmazonS3FullAccess)"
    )
    users = {r.inputs["name"] for r in run.of_type("aws:iam/user:User")}
    assert users == {f"mlops-{stack}-mlflow", f"mlops-{stack}-airflow", f"mlops-{stack}-loki"}


@pytest.mark.parametrize("stack", STACKS)
def test_credentials_are_secret_end_to_end(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    assert checks.plaintext_secret_problems(run) == []
    store = next(r for r in run.registrations if r.type == "mlops:platform:ArtifactStore")
    assert all(isinstance(v, SecretValue) for v in store.registered_outputs["active_key_ids"].values())
    database = next(r for r in run.registrations if r.type == "mlops:platform:Database")
    assert isinstance(database.registered_outputs["admin_password"], SecretValue)
    for name in ("mlflow-s3-credentials", "airflow-s3-logs", "mlflow-db", "airflow-metadata"):
        (secret,) = [r for r in run.of_type("kubernetes:core/v1:Secret") if r.manifest["metadata"]["name"] == name]
        data = secret.inputs["stringData"]
        assert isinstance(data, SecretValue) or all(isinstance(v, SecretValue) for v in data.values()), name
    # the one secret export: the models' generated API keys
    secret_exports = {name for name, e in run.exports.items() if e.secret}
    assert "modelApiKeys" in secret_exports and secret_exports <= {"modelApiKeys", "apiAdminToken"}
    exported = json.dumps({k: v for k, v in run.export_values().items() if k not in secret_exports})
    for key in run.of_type("aws:iam/accessKey:AccessKey"):
        assert key.outputs["secret"] not in exported


@pytest.mark.parametrize("stack", STACKS)
def test_secret_formats_match_the_charts(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    secrets = {r.manifest["metadata"]["name"]: r for r in run.of_type("kubernetes:core/v1:Secret")}
    s3_keys = reveal(secrets["mlflow-s3-credentials"].inputs["stringData"])
    assert set(s3_keys) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "credentials"}
    # boto's shared credentials file, for pods that mount the Secret (AWS_SHARED_CREDENTIALS_FILE)
    assert s3_keys["credentials"] == (
        f"[default]\naws_access_key_id = {s3_keys['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {s3_keys['AWS_SECRET_ACCESS_KEY']}\n"
    )
    conn = reveal(secrets["airflow-s3-logs"].inputs["stringData"])["AIRFLOW_CONN_MLOPS_S3_LOGS"]
    assert conn.startswith("aws://AKIA") and conn.endswith("@/?region_name=eu-west-1")
    assert set(reveal(secrets["mlflow-db"].inputs["stringData"])) == {"username", "password"}
    url = reveal(secrets["airflow-metadata"].inputs["stringData"])["connection"]
    host = "postgres.mlops-dev-data.svc.cluster.local" if stack == "dev" else ".rds.amazonaws.com"
    assert (
        re.match(r"postgresql://airflow_[ab]:", url)
        and host in url
        and url.endswith("/airflow?sslmode=" + ("disable" if stack == "dev" else "require"))
    )
    assert secrets["mlflow-db"].manifest["metadata"]["namespace"] == f"mlops-{stack}-mlflow"
    assert secrets["airflow-metadata"].manifest["metadata"]["namespace"] == f"mlops-{stack}-airflow"


# --- rotation ----------------------------------------------------------------------------------------
def test_rotation_plan_is_two_slots_of_consecutive_periods() -> None:
    for period in range(0, 12):
        plan = rotation_plan(ROTATION_EPOCH + timedelta(days=30 * period + 3), 30)
        assert plan.period == period
        assert plan.active.generation == period and plan.previous.generation == period - 1
        assert {s.slot for s in plan.slots} == {0, 1}
    with pytest.raises(ValueError, match="timezone"):
        rotation_plan(datetime(2026, 1, 1), 30)


ROTATION_START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROTATION_STEPS = 4  # the initial deployment and three rotations


def _active_key_id(consumer: str, content: dict[str, str]) -> str:
    if consumer in ("mlflow", "loki"):
        return content["AWS_ACCESS_KEY_ID"]
    uri = urllib.parse.urlsplit(content["AIRFLOW_CONN_MLOPS_S3_LOGS"])
    return urllib.parse.unquote(uri.username or "")


def rotation_state(now: datetime) -> dict[str, Any]:
    """One `pulumi up` of prod at `now`, under mocks: per consumer its key slots (trigger, key id),
    the active key id as its Secret holds it, the Secret content and the pod-template annotation."""
    run = run_program("prod", env={ROTATION_CLOCK_VAR: now.isoformat()})
    slots: dict[str, dict[int, dict[str, Any]]] = {}
    for reg in run.of_type("aws:iam/accessKey:AccessKey"):
        consumer = reg.name.split("-")[1]
        slot = int(reg.name.rsplit("slot", 1)[1])
        assert reg.delete_before_replace, "the expired key must go before its replacement is created"
        assert "secret" in reg.additional_secret_outputs
        slots.setdefault(consumer, {})[slot] = {"trigger": int(reg.replacement_trigger), "id": reg.outputs["id"]}
    secrets = {r.manifest["metadata"]["name"]: r for r in run.of_type("kubernetes:core/v1:Secret")}
    releases = {reveal(r.inputs)["chart"]: r for r in run.helm_releases()}
    annotations = {
        "mlflow": reveal(releases["mlflow"].inputs)["values"]["podAnnotations"]["mlops-platform/s3-key"],
        "airflow": reveal(releases["airflow"].inputs)["values"]["airflowPodAnnotations"]["mlops-platform/s3-key"],
        "loki": reveal(releases["loki"].inputs)["values"]["loki"]["podAnnotations"]["mlops-platform/s3-key"],
    }
    state: dict[str, Any] = {"period": None, "consumers": {}}
    store = next(r for r in run.registrations if r.type == "mlops:platform:ArtifactStore")
    assert store.registered_outputs is not None
    state["period"] = int(store.registered_outputs["rotation_period"])
    consumers = (("mlflow", "mlflow-s3-credentials"), ("airflow", "airflow-s3-logs"), ("loki", "loki-s3-credentials"))
    for consumer, secret_name in consumers:
        secret = secrets[secret_name]
        content = reveal(secret.inputs["stringData"])
        # the workload rolls only after its Secret holds the new key
        assert secret.urn in releases[consumer].dependencies, f"the {consumer} release does not wait for {secret_name}"
        state["consumers"][consumer] = {
            "slots": slots[consumer],
            "active": _active_key_id(consumer, content),
            "secret": json.dumps(content, sort_keys=True),
            "annotation": annotations[consumer],
            "key_secrets": [k.outputs["secret"] for k in run.of_type("aws:iam/accessKey:AccessKey")],
        }
    state["database"] = database_state(run, secrets, releases)
    return state


# application -> its connection Secret (every workload reading it carries DB_CREDENTIALS_ANNOTATION)
DB_SECRETS = {
    "mlflow": "mlflow-db",
    "mlflow_auth": "mlflow-auth-db",
    "airflow": "airflow-metadata",
    "platform_api": "mlops-api-db",
}


def _db_credentials(content: dict[str, str]) -> tuple[str, str]:
    if "connection" in content:
        url = urllib.parse.urlsplit(content["connection"])
        return url.username or "", urllib.parse.unquote(url.password or "")
    return content["username"], content["password"]


def _db_client_annotations(run: ProgramRun, releases: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """Application -> (the annotation on its clients' pod templates, what those workloads wait for)."""
    mlflow, airflow = (reveal(releases[chart].inputs)["values"] for chart in ("mlflow", "airflow"))
    (api,) = [
        r for r in run.of_type("kubernetes:apps/v1:Deployment") if r.manifest["metadata"]["name"] == "platform-api"
    ]
    pod_annotations = api.manifest["spec"]["template"]["metadata"]["annotations"]
    return {
        "mlflow": (mlflow["podAnnotations"][DB_CREDENTIALS_ANNOTATION], releases["mlflow"].dependencies),
        "mlflow_auth": (mlflow["podAnnotations"][DB_CREDENTIALS_ANNOTATION], releases["mlflow"].dependencies),
        "airflow": (airflow["airflowPodAnnotations"][DB_CREDENTIALS_ANNOTATION], releases["airflow"].dependencies),
        "platform_api": (pod_annotations[DB_CREDENTIALS_ANNOTATION], api.dependencies),
    }


def database_state(run: ProgramRun, secrets: dict[str, Any], releases: dict[str, Any]) -> dict[str, Any]:
    """The database's side of one run: per application the role and password its Secret holds (and whether they
    are secret), the annotation on its clients' pods; every login role's password; the bootstrap Job."""
    passwords = {
        r.name.removeprefix("database-").removesuffix("-password"): r.outputs["result"]
        for r in run.of_type("random:index/randomPassword:RandomPassword")
        if r.name.startswith("database-") and r.name != "database-admin-password"
    }
    (job,) = bootstrap_jobs(run)
    annotations = _db_client_annotations(run, releases)
    apps = {}
    for app, secret_name in DB_SECRETS.items():
        secret = secrets[secret_name]
        data = secret.inputs["stringData"]
        annotation, waits_for = annotations[app]
        apps[app] = {
            "credentials": _db_credentials(reveal(data)),
            "secret": isinstance(data, SecretValue) or all(isinstance(v, SecretValue) for v in data.values()),
            "annotation": annotation,
            "rolls_after_secret": secret.urn in waits_for,
        }
    return {
        "apps": apps,
        "passwords": passwords,
        "job": job.manifest["metadata"]["name"],
        "sql": next(
            r.manifest["data"]["bootstrap.sql"]
            for r in run.of_type("kubernetes:core/v1:ConfigMap")
            if r.manifest["metadata"]["name"] == "db-bootstrap-sql"
        ),
    }


@pytest.fixture(scope="module")
def rotation_states() -> list[dict[str, Any]]:
    """prod deployed at the same time of day in four consecutive 30-day rotation periods."""
    return [rotation_state(ROTATION_START + timedelta(days=30 * i)) for i in range(ROTATION_STEPS)]


@pytest.mark.parametrize("consumer", ["mlflow", "airflow", "loki"])
def test_keys_rotate_over_three_periods_without_downtime(rotation_states: list[dict[str, Any]], consumer: str) -> None:
    periods = [s["period"] for s in rotation_states]
    assert periods == list(range(periods[0], periods[0] + ROTATION_STEPS))
    history: list[dict[str, Any]] = []
    for state in rotation_states:
        now, period = state["consumers"][consumer], state["period"]
        assert len(now["slots"]) == 2, "at most two keys per user (AWS allows two)"
        active_slot = now["slots"][period % 2]
        assert active_slot["trigger"] == period and now["active"] == active_slot["id"], (
            "the active key is this period's"
        )
        assert now["slots"][(period + 1) % 2]["trigger"] == period - 1, "the other slot holds the previous period's key"
        assert now["annotation"] not in now["secret"] and now["active"] not in now["annotation"]
        assert not any(secret in now["annotation"] for secret in now["key_secrets"])
        if history:
            before = history[-1]
            keys_now = {slot["id"] for slot in now["slots"].values()}
            assert before["active"] in keys_now, "last period's key stays valid one more period"
            changed = [k for k in (0, 1) if now["slots"][k]["trigger"] != before["slots"][k]["trigger"]]
            assert changed == [period % 2], "one key replaced per period: the one from two periods ago"
            assert before["slots"][period % 2]["id"] not in keys_now, "the key from two periods ago is gone"
            assert now["active"] not in {h["active"] for h in history}, "a new active key every period"
            assert now["secret"] not in {h["secret"] for h in history}, "the Secret gets the new key"
            assert now["annotation"] not in {h["annotation"] for h in history}, "the workload rolls"
        history.append(now)


@pytest.mark.parametrize("app", sorted(DB_SECRETS))
def test_database_passwords_rotate_over_three_periods_with_overlap(
    rotation_states: list[dict[str, Any]], app: str
) -> None:
    """Each period the application's Secret holds the other login role with a fresh password, its pods roll (the
    annotation changes, after the Secret), the bootstrap runs again, and last period's role keeps its password
    (overlap); the password a slot held two periods ago is gone."""
    history: list[dict[str, Any]] = []
    for state in rotation_states:
        db, period = state["database"], state["period"]
        now = db["apps"][app]
        user, password = now["credentials"]
        assert user == f"{app}_{'ab'[period % 2]}", "the active slot's login role"
        assert db["passwords"][user] == password and now["secret"], "its own password, as a secret"
        assert set(db["passwords"]) >= {f"{app}_a", f"{app}_b"}
        assert now["rolls_after_secret"], "the pods roll only once the Secret holds the new credentials"
        assert password not in now["annotation"] and not any(pw in now["annotation"] for pw in db["passwords"].values())
        assert f"-- rotation period {period}:" in db["sql"] and password not in db["sql"]
        if history:
            before = history[-1]
            old_user, old_password = before["app"]["credentials"]
            assert old_user != user and db["passwords"][old_user] == old_password, "last period's role still logs in"
            assert password != before["passwords"][user], "the slot's password from two periods ago is replaced"
            assert password not in {h["app"]["credentials"][1] for h in history}, "a fresh password every period"
            assert now["annotation"] not in {h["app"]["annotation"] for h in history}, "the pods roll"
            assert db["job"] not in {h["job"] for h in history}, "the bootstrap runs again"
        history.append({"app": now, "passwords": db["passwords"], "job": db["job"]})


def test_rotation_clock_must_carry_a_zone() -> None:
    with pytest.raises(ValueError, match=ROTATION_CLOCK_VAR):
        run_program("dev", env={ROTATION_CLOCK_VAR: "2026-11-23T00:00:00"})


# --- database under mocks ---------------------------------------------------------------------------
def test_prod_uses_rds_with_every_safeguard(stack_run: Any) -> None:
    run = stack_run("prod")
    db = only(run, "aws:rds/instance:Instance")
    i = db.inputs
    assert db.protect
    assert (i["engine"], i["engineVersion"], i["instanceClass"]) == ("postgres", "16", "db.m7g.large")
    assert i["storageEncrypted"] is True and i["publiclyAccessible"] is False
    assert i["multiAz"] is True and i["deletionProtection"] is True
    assert i["skipFinalSnapshot"] is False and i["finalSnapshotIdentifier"] == "mlops-prod-final"
    assert i["backupRetentionPeriod"] == 14
    assert isinstance(i["password"], SecretValue)
    params = only(run, "aws:rds/parameterGroup:ParameterGroup").inputs
    assert params["family"] == "postgres16"
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"} in params["parameters"]
    assert only(run, "aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == [
        "subnet-0a1b2c3d4e5f60001",
        "subnet-0a1b2c3d4e5f60002",
        "subnet-0a1b2c3d4e5f60003",
    ]
    assert i["dbSubnetGroupName"] == only(run, "aws:rds/subnetGroup:SubnetGroup").outputs["name"]
    assert i["parameterGroupName"] == only(run, "aws:rds/parameterGroup:ParameterGroup").outputs["name"]
    assert i["vpcSecurityGroupIds"] == [only(run, "aws:ec2/securityGroup:SecurityGroup").id]
    assert only(run, "aws:ec2/securityGroup:SecurityGroup").inputs["vpcId"] == "vpc-0a1b2c3d4e5f60718"
    assert only(run, "aws:ec2/securityGroup:SecurityGroup").inputs.get("egress") in ([], None)
    (rule,) = only(run, "aws:ec2/securityGroup:SecurityGroup").inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["protocol"], rule["cidrBlocks"]) == (
        5432,
        5432,
        "tcp",
        ["10.40.0.0/16"],
    )
    assert not run.of_type("kubernetes:apps/v1:StatefulSet")


def test_dev_runs_postgres_on_the_cluster(stack_run: Any) -> None:
    run = stack_run("dev")
    assert not run.of_type("aws:rds/instance:Instance")
    (sts,) = run.of_type("kubernetes:apps/v1:StatefulSet")
    assert sts.protect
    spec = sts.manifest["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "postgres:16.10-bookworm"
    assert c["readinessProbe"]["exec"]["command"][0] == "pg_isready" and c["livenessProbe"]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["allowPrivilegeEscalation"] is False
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_dev_with_rds_mode_gets_rds_with_dev_defaults() -> None:
    run = run_program(
        "dev",
        overrides={
            "database.mode": "rds",
            "database.vpcId": "vpc-0abc",
            "database.subnetIds": ["subnet-0a", "subnet-0b"],
            "database.allowedCidrs": ["10.1.0.0/16"],
        },
    )
    i = only(run, "aws:rds/instance:Instance").inputs
    assert i["multiAz"] is False and i["deletionProtection"] is False and i["skipFinalSnapshot"] is True
    assert i["storageEncrypted"] is True and i["publiclyAccessible"] is False and i["backupRetentionPeriod"] >= 7
    assert not run.of_type("kubernetes:apps/v1:StatefulSet")
    assert checks.reference_problems(run) == [] and checks.plaintext_secret_problems(run) == []
    assert checks.kubernetes_schema_problems(run, K8S_VERSIONS) == []
    (job,) = bootstrap_jobs(run)
    env = {e["name"]: e.get("value") for e in job.manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (
        env["PGHOST"].endswith(".rds.amazonaws.com")
        and env["PGSSLMODE"] == "require"
        and env["PGUSER"] == "mlops_admin"
    )


def bootstrap_jobs(run: Any) -> list[Any]:
    """The database bootstrap Job(s) (MLflow's client-user Job lives in the same run with basic auth)."""
    return [
        r for r in run.of_type("kubernetes:batch/v1:Job") if r.manifest["metadata"]["name"].startswith("db-bootstrap-")
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_bootstrap_job_takes_sql_from_a_configmap_and_passwords_from_a_secret(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    (job,) = bootstrap_jobs(run)
    pod = job.manifest["spec"]["template"]["spec"]
    (sql_map,) = [
        r for r in run.of_type("kubernetes:core/v1:ConfigMap") if r.manifest["metadata"]["name"] == "db-bootstrap-sql"
    ]
    sql = sql_map.manifest["data"]["bootstrap.sql"]
    assert "CREATE ROLE mlflow" in sql and "CREATE DATABASE airflow OWNER airflow" in sql
    assert "PASSWORD :'mlflow_a_password'" in sql and "PASSWORD :'mlflow_b_password'" in sql
    for key in run.of_type("random:index/randomPassword:RandomPassword"):
        assert key.outputs["result"] not in sql
    # the passwords: the Secret mounted as files, read by psql from a pgpass file and `\set` lines, never env or argv
    (container,) = pod["containers"]
    assert "envFrom" not in container and not any("valueFrom" in e for e in container["env"])
    assert container["command"] == ["/bin/sh", "/sql/bootstrap.sh"]
    # the login roles, each with its password variable (the NOLOGIN owner roles have none)
    roles = list(dict.fromkeys(re.findall(r"PASSWORD :'(\w+)_password'", sql)))
    assert roles and all(r.endswith(("_a", "_b")) for r in roles)
    assert sql_map.manifest["data"]["bootstrap.sh"] == bootstrap_script(roles)
    assert sql_map.manifest["data"]["passwords.sql"] == password_sql(roles)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["sql"]["configMap"]["name"] == "db-bootstrap-sql"
    assert volumes["passwords"]["secret"] == {"secretName": "db-bootstrap", "defaultMode": 0o440}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["passwords"] == "/var/run/secrets/mlops/db-bootstrap" and mounts["home"] == "/home/bootstrap"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for key in run.of_type("random:index/randomPassword:RandomPassword"):
        assert key.outputs["result"] not in sql_map.manifest["data"]["passwords.sql"]


@pytest.mark.parametrize("key", ["database.multiAz", "database.deletionProtection"])
def test_prod_rds_safeguards_cannot_be_switched_off(key: str) -> None:
    cfg = read_stack_file("prod")
    config = {**cfg.config, f"mlops-platform:{key}": "false"}
    with pytest.raises(SettingsError, match=f"{key} must stay true in prod"):
        load_settings("prod", config, set(cfg.secret_keys), cfg.source)
    dev = read_stack_file("dev")
    rds_dev = {
        **dev.config,
        f"mlops-platform:{key}": "false",
        "mlops-platform:database.mode": "rds",
        "mlops-platform:database.vpcId": "vpc-0abc",
        "mlops-platform:database.subnetIds": '["subnet-0a", "subnet-0b"]',
        "mlops-platform:database.allowedCidrs": '["10.1.0.0/16"]',
    }
    load_settings("dev", rds_dev, set(dev.secret_keys), dev.source)  # dev may


@pytest.mark.parametrize("stack", STACKS)
def test_bootstrap_reruns_when_its_inputs_change_and_gates_the_host(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    (job,) = bootstrap_jobs(run)
    template = job.manifest["spec"]["template"]
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    sql = next(
        r for r in run.of_type("kubernetes:core/v1:ConfigMap") if r.manifest["metadata"]["name"] == "db-bootstrap-sql"
    )
    passwords = {r.name: r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")}
    # the login roles, in the SQL's order
    roles = re.findall(r"ALTER ROLE (\w+) WITH LOGIN PASSWORD", sql.manifest["data"]["bootstrap.sql"])
    owners = {"mlflow", "airflow", "mlflow_auth"}  # MLflow basic auth's database in both stacks
    assert {f"{o}_{s}" for o in owners for s in "ab"} <= set(roles)
    inputs = [
        sql.manifest["data"]["bootstrap.sql"],
        env["PGHOST"],
        int(env["PGPORT"]),
        *[passwords[f"database-{r}-password"] for r in roles],
    ]
    digest = template["metadata"]["annotations"][BOOTSTRAP_INPUTS_ANNOTATION]
    assert digest == inputs_digest(inputs)
    for changed in range(len(inputs)):  # any input changing (a password, the server) replaces the Job
        other = [f"{v}-changed" if i == changed else v for i, v in enumerate(inputs)]
        assert inputs_digest(other) != digest
    assert not isinstance(
        job.inputs["spec"]["template"]["metadata"]["annotations"][BOOTSTRAP_INPUTS_ANNOTATION], SecretValue
    )
    assert all(pw not in digest for pw in passwords.values())
    # the Airflow metadata Secret, the MLflow release and the exported host wait for the bootstrap
    metadata = next(
        r for r in run.of_type("kubernetes:core/v1:Secret") if r.manifest["metadata"]["name"] == "airflow-metadata"
    )
    assert job.urn in metadata.dependencies
    mlflow = next(r for r in run.helm_releases() if reveal(r.inputs)["chart"] == "mlflow")
    assert job.urn in mlflow.dependencies
    assert run.exports["databaseHost"].value == env["PGHOST"] and not run.exports["databaseHost"].secret


def test_airflow_parses_the_logging_connection(stack_run: Any, tmp_path: Path) -> None:
    """The Secret's AIRFLOW_CONN_MLOPS_S3_LOGS read by Airflow 3's own environment-variable secrets
    backend (in a subprocess with a throwaway AIRFLOW_HOME): the key id, secret and region survive."""
    run = stack_run("prod")
    secret = next(
        r for r in run.of_type("kubernetes:core/v1:Secret") if r.manifest["metadata"]["name"] == "airflow-s3-logs"
    )
    env_value = reveal(secret.inputs["stringData"])["AIRFLOW_CONN_MLOPS_S3_LOGS"]
    keys = [k for k in run.of_type("aws:iam/accessKey:AccessKey") if k.name.startswith("artifacts-airflow-")]
    (active,) = [k for k in keys if k.outputs["id"] in env_value]
    assert any(c in active.outputs["secret"] for c in "/+="), "the mock secret exercises URL encoding"
    script = (
        "import json\n"
        "from airflow.secrets.environment_variables import EnvironmentVariablesBackend\n"
        "c = EnvironmentVariablesBackend().get_connection('mlops_s3_logs')\n"
        "print(json.dumps([c.conn_type, c.login, c.password, c.extra_dejson]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW_CONN_MLOPS_S3_LOGS": env_value},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    conn_type, login, password, extra = json.loads(result.stdout.strip().splitlines()[-1])
    assert (conn_type, login, password) == ("aws", active.outputs["id"], active.outputs["secret"])
    assert extra == {"region_name": "eu-west-1"}


# --- NFS: volumes, their directories' owners, pruning, protection -------------------------------------
NFS_OPTIONS = ["nfsvers=4.1", "hard", "timeo=600", "retrans=2", "noresvport"]


def named(run: ProgramRun, typ: str, name: str) -> Any:
    (found,) = [r for r in run.of_type(typ) if r.manifest["metadata"]["name"] == name]
    return found


def test_dev_nfs_volumes_are_static_retained_and_bound_to_their_claims(stack_run: Any) -> None:
    run = stack_run("dev")
    pvs = {r.manifest["metadata"]["name"]: r for r in run.of_type("kubernetes:core/v1:PersistentVolume")}
    pvcs = {r.manifest["metadata"]["name"]: r for r in run.of_type("kubernetes:core/v1:PersistentVolumeClaim")}
    # the serving logs' volume, and the export's root for the preparation Jobs
    assert set(pvs) == {"mlops-dev-serving-logs", "mlops-dev-nfs-export"}
    assert set(pvcs) == {"serving-logs", "nfs-export"}
    for pv_name, claim, namespace, path in (
        ("mlops-dev-serving-logs", "serving-logs", "mlops-dev-serving", "/exports/mlops-dev/serving-logs"),
        ("mlops-dev-nfs-export", "nfs-export", "mlops-dev-storage", "/exports/mlops-dev"),
    ):
        pv, pvc = pvs[pv_name], pvcs[claim]
        spec = pv.manifest["spec"]
        assert spec["accessModes"] == ["ReadWriteMany"] and spec["persistentVolumeReclaimPolicy"] == "Retain"
        assert spec["storageClassName"] == "" and spec["mountOptions"] == NFS_OPTIONS
        assert spec["nfs"] == {"server": "nfs.dev.mlops.internal", "path": path}
        assert spec["claimRef"] == {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "name": claim,
            "namespace": namespace,
        }
        assert pvc.manifest["spec"]["volumeName"] == pv_name and pvc.manifest["spec"]["storageClassName"] == ""
        assert pvc.manifest["metadata"]["namespace"] == namespace
        for reg in (pv, pvc):
            assert reg.protect and reg.retain_on_delete


def test_dev_prepares_each_directory_with_its_pods_owner_before_they_mount_it(stack_run: Any) -> None:
    """The one-shot Job: in the storage namespace (Pod Security baseline: it runs as root), only CHOWN,
    DAC_OVERRIDE and FOWNER, nothing else; it creates the directory owned by the serving pods' uid and gid, and
    every serving Deployment waits for it."""
    run = stack_run("dev")
    (job,) = [
        r for r in run.of_type("kubernetes:batch/v1:Job") if r.manifest["metadata"]["name"].startswith("prepare-")
    ]
    manifest = job.manifest
    assert manifest["metadata"]["namespace"] == "mlops-dev-storage"
    levels = {
        o.manifest["metadata"]["name"]: o.manifest["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for o in run.of_type("kubernetes:core/v1:Namespace")
    }
    assert levels["mlops-dev-storage"] == "baseline"
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["runAsUser"] == 0 and ctx["runAsNonRoot"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]}
    assert ctx["allowPrivilegeEscalation"] is False and ctx["privileged"] is False
    assert ctx["readOnlyRootFilesystem"] is True and ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False and not pod.get("hostNetwork")
    script = container["command"][-1]
    assert 'mkdir -p "/export/serving-logs"' in script and 'chown 10001:10001 "/export/serving-logs"' in script
    assert 'chmod 0770 "/export/serving-logs"' in script
    assert pod["volumes"] == [{"name": "export", "persistentVolumeClaim": {"claimName": "nfs-export"}}]
    export_pvc = named(run, "kubernetes:core/v1:PersistentVolumeClaim", "nfs-export")
    assert export_pvc.urn in job.dependencies
    deployments = [
        r for r in run.of_type("kubernetes:apps/v1:Deployment") if r.manifest["metadata"]["name"].startswith("model-")
    ]
    assert len(deployments) == 2 and all(job.urn in d.dependencies for d in deployments)
    # the owner is the serving pods' own uid and gid
    for d in deployments:
        pod_ctx = d.manifest["spec"]["template"]["spec"]["securityContext"]
        assert (pod_ctx["runAsUser"], pod_ctx["runAsGroup"]) == (10001, 10001)
    assert checks.kubernetes_schema_problems(run, K8S_VERSIONS) == []


def test_the_preparation_runs_again_when_its_inputs_change() -> None:
    first = run_program("dev")
    moved = run_program("dev", overrides={"nfs.path": "/exports/elsewhere"})

    def job_name(run: ProgramRun) -> str:
        (job,) = [
            r for r in run.of_type("kubernetes:batch/v1:Job") if r.manifest["metadata"]["name"].startswith("prepare-")
        ]
        assert job.delete_before_replace
        return str(job.manifest["metadata"]["name"])

    assert job_name(first) != job_name(moved)


def test_airflow_waits_for_its_log_directory_when_logs_stay_on_nfs() -> None:
    run = run_program("dev", overrides={"airflow.remoteLogging": "false"})
    jobs = {
        r.manifest["metadata"]["name"].rsplit("-", 1)[0]: r
        for r in run.of_type("kubernetes:batch/v1:Job")
        if r.manifest["metadata"]["name"].startswith("prepare-")
    }
    assert set(jobs) == {"prepare-serving-logs", "prepare-airflow-logs"}
    script = jobs["prepare-airflow-logs"].manifest["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert 'chown 50000:0 "/export/airflow-logs"' in script  # the Airflow image's user, group root
    release = next(r for r in run.helm_releases() if reveal(r.inputs)["chart"] == "airflow")
    assert jobs["prepare-airflow-logs"].urn in release.dependencies


def test_prod_uses_one_efs_access_point_per_volume(stack_run: Any) -> None:
    """EFS enforces the owner: the access point's POSIX user is the pods' uid and gid and EFS creates its root
    directory with that owner; the volume mounts it through the EFS CSI driver; no Job, no storage namespace."""
    run = stack_run("prod")
    (ap,) = run.of_type("aws:efs/accessPoint:AccessPoint")
    assert ap.inputs["fileSystemId"] == "fs-0123456789abcdef0"
    assert ap.inputs["posixUser"] == {"uid": 10001, "gid": 10001}
    assert ap.inputs["rootDirectory"] == {
        "path": "/mlops-prod/serving-logs",
        "creationInfo": {"ownerUid": 10001, "ownerGid": 10001, "permissions": "0770"},
    }
    pv = named(run, "kubernetes:core/v1:PersistentVolume", "mlops-prod-serving-logs")
    spec = pv.manifest["spec"]
    assert spec["csi"] == {"driver": "efs.csi.aws.com", "volumeHandle": f"fs-0123456789abcdef0::{ap.id}"}
    assert "nfs" not in spec and spec["persistentVolumeReclaimPolicy"] == "Retain" and pv.protect
    assert spec["claimRef"]["namespace"] == "mlops-prod-serving"
    assert not [r for r in run.of_type("kubernetes:batch/v1:Job") if "prepare" in r.manifest["metadata"]["name"]]
    assert "mlops-prod-storage" not in {
        o.manifest["metadata"]["name"] for o in run.of_type("kubernetes:core/v1:Namespace")
    }
    deployments = [
        r for r in run.of_type("kubernetes:apps/v1:Deployment") if r.manifest["metadata"]["name"].startswith("model-")
    ]
    assert deployments and all(ap.urn in d.dependencies for d in deployments)


@pytest.mark.parametrize("stack", STACKS)
def test_serving_log_files_are_pruned_by_age(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    cron = named(run, "kubernetes:batch/v1:CronJob", "prune-serving-logs").manifest
    assert cron["metadata"]["namespace"] == f"mlops-{stack}-serving"
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and spec["schedule"] == "23 3 * * *"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    days = 7 if stack == "dev" else 30
    assert container["command"][-1] == (
        f"set -eu; find /data -mindepth 1 -type f -mtime +{days} -print -delete; "
        f"find /data -mindepth 1 -type d -empty -mtime +{days} -print -delete"
    )
    # as the files' owner, Pod Security restricted
    assert pod["securityContext"]["runAsUser"] == 10001 and container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "serving-logs"}}]


def test_the_prune_command_deletes_old_files_and_empty_pod_directories(tmp_path: Path) -> None:
    """The CronJob's own command, run here on a copy of its mount: files older than the days go, recent ones and
    the directories still holding them stay, a departed pod's emptied directory goes."""
    from components.shared_storage import DATA_MOUNT, prune_script

    data = tmp_path / "data"
    old_pod, live_pod = data / "model-a-old", data / "model-a-live"
    old_pod.mkdir(parents=True)
    live_pod.mkdir()
    stale, fresh, stale_live = old_pod / "serving.log.3", live_pod / "serving.log", live_pod / "serving.log.1"
    for f in (stale, fresh, stale_live):
        f.write_text("{}\n")
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).timestamp()
    for path in (stale, stale_live):
        os.utime(path, (ten_days_ago, ten_days_ago))
    script = prune_script(7).replace(DATA_MOUNT, str(data))
    subprocess.run(["/bin/sh", "-c", script], check=True, capture_output=True)
    os.utime(old_pod, (ten_days_ago, ten_days_ago))  # the directory's own age (its last file went just now)
    subprocess.run(["/bin/sh", "-c", script], check=True, capture_output=True)
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == [
        "model-a-live",
        "model-a-live/serving.log",
    ]


def test_airflow_log_volume_exists_only_without_remote_logging() -> None:
    run = run_program("dev", overrides={"airflow.remoteLogging": "false"})
    claims = {
        r.manifest["metadata"]["name"]: r.manifest for r in run.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    }
    assert claims["airflow-logs"]["metadata"]["namespace"] == "mlops-dev-airflow"
    values = next(reveal(r.inputs)["values"] for r in run.helm_releases() if reveal(r.inputs)["chart"] == "airflow")
    assert values["logs"]["persistence"] == {"enabled": True, "existingClaim": "airflow-logs"}
    assert checks.reference_problems(run) == []
    assert checks.kubernetes_schema_problems(run, K8S_VERSIONS) == []
    pv = next(
        r
        for r in run.of_type("kubernetes:core/v1:PersistentVolume")
        if r.manifest["metadata"]["name"] == "mlops-dev-airflow-logs"
    )
    assert pv.manifest["spec"]["claimRef"]["name"] == "airflow-logs" and pv.protect and pv.retain_on_delete


@pytest.mark.parametrize("stack", STACKS)
def test_every_data_bearing_resource_is_protected(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    data_types = {
        "aws:s3/bucket:Bucket",
        "aws:rds/instance:Instance",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:core/v1:PersistentVolume",
        "kubernetes:core/v1:PersistentVolumeClaim",
        *BUCKET_COMPANIONS,
    }
    data = [r for r in run.registrations if r.type in data_types]
    assert data and all(r.protect for r in data), [r.name for r in data if not r.protect]


# --- least privilege, for real (moto's server with IAM authorization) -------------------------------
def _client(service: str, endpoint: str, key_id: str = "testing", secret: str = "testing") -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret, region_name="us-east-1"
    )


def _error_code(call: Any) -> str | None:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return None


def _denied(call: Any) -> bool:
    return _error_code(call) in ("AccessDenied", "403")


def program_policies(run: ProgramRun, bucket: str) -> dict[str, str]:
    """consumer -> the policy document the program attaches to its IAM user, aimed at `bucket`."""
    mock_bucket = only(run, "aws:s3/bucket:Bucket").outputs["bucket"]
    docs = {}
    for reg in run.of_type("aws:iam/userPolicy:UserPolicy"):
        consumer = reg.name.split("-")[1]
        doc = reg.inputs["policy"]
        assert f"arn:aws:s3:::{mock_bucket}" in doc
        docs[consumer] = doc.replace(f"arn:aws:s3:::{mock_bucket}", f"arn:aws:s3:::{bucket}")
    assert set(docs) == {"mlflow", "airflow", "loki"}
    return docs


@dataclass
class IamMoto:
    endpoint: str
    bucket: str
    other: str
    admin: Any  # IAM client with the test's own administrator key
    policies: dict[str, str]  # consumer -> the program's policy document for `bucket`
    keys: dict[str, tuple[str, str]]  # consumer -> a key of a user holding exactly that policy

    def s3(self, key: tuple[str, str]) -> Any:
        return _client("s3", self.endpoint, *key)

    def new_user(self, consumer: str) -> str:
        user = f"mlops-test-{consumer}-{uuid.uuid4().hex[:8]}"
        self.admin.create_user(UserName=user)
        self.admin.put_user_policy(UserName=user, PolicyName="artifacts", PolicyDocument=self.policies[consumer])
        return user


@pytest.fixture(scope="module")
def iam_moto(stack_run: Any) -> Iterator[IamMoto]:
    """moto's server with the program's bucket layout and IAM policies, then IAM authorization
    switched on (`/moto-api/reset-auth` with 0 = INITIAL_NO_AUTH_ACTION_COUNT exhausted): from then
    on every request is authenticated by its access key and authorized by its user's policies."""
    bucket, other = f"artifacts-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    with moto_s3(buckets=(bucket, other)) as server:
        endpoint = server.endpoint_url
        iam, s3 = _client("iam", endpoint), _client("s3", endpoint)
        iam.create_user(UserName="test-admin")
        admin_doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="test-admin", PolicyName="admin", PolicyDocument=json.dumps(admin_doc))
        admin_key = iam.create_access_key(UserName="test-admin")["AccessKey"]
        env = IamMoto(endpoint, bucket, other, iam, program_policies(stack_run("prod"), bucket), {})
        for consumer, prefix in (("mlflow", MLFLOW_PREFIX), ("airflow", AIRFLOW_LOG_PREFIX), ("loki", LOKI_PREFIX)):
            key = iam.create_access_key(UserName=env.new_user(consumer))["AccessKey"]
            env.keys[consumer] = (key["AccessKeyId"], key["SecretAccessKey"])
            s3.put_object(Bucket=bucket, Key=f"{prefix}seed.txt", Body=b"seed")
        enable = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(enable, timeout=10).read()
        env.admin = _client("iam", endpoint, admin_key["AccessKeyId"], admin_key["SecretAccessKey"])
        # authorization is really on: unknown credentials are refused
        assert _error_code(lambda: s3.list_objects_v2(Bucket=bucket)) is not None
        yield env


@pytest.mark.parametrize(
    ("consumer", "own", "foreign"),
    [
        ("mlflow", MLFLOW_PREFIX, AIRFLOW_LOG_PREFIX),
        ("airflow", AIRFLOW_LOG_PREFIX, MLFLOW_PREFIX),
        ("loki", LOKI_PREFIX, MLFLOW_PREFIX),
    ],
)
def test_each_user_reaches_its_prefix_only(iam_moto: IamMoto, consumer: str, own: str, foreign: str) -> None:
    bucket, other = iam_moto.bucket, iam_moto.other
    s3 = iam_moto.s3(iam_moto.keys[consumer])
    s3.put_object(Bucket=bucket, Key=f"{own}run/model.pkl", Body=b"model")
    assert s3.get_object(Bucket=bucket, Key=f"{own}run/model.pkl")["Body"].read() == b"model"
    assert s3.get_object(Bucket=bucket, Key=f"{own}seed.txt")["Body"].read() == b"seed"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=own)
    assert {o["Key"] for o in listed.get("Contents", [])} >= {f"{own}seed.txt", f"{own}run/model.pkl"}
    s3.delete_object(Bucket=bucket, Key=f"{own}run/model.pkl")
    assert _denied(lambda: s3.get_object(Bucket=bucket, Key=f"{foreign}seed.txt"))
    assert _denied(lambda: s3.put_object(Bucket=bucket, Key=f"{foreign}x", Body=b"x"))
    assert _denied(lambda: s3.delete_object(Bucket=bucket, Key=f"{foreign}seed.txt"))
    assert _denied(lambda: s3.put_object(Bucket=bucket, Key="outside-any-prefix.txt", Body=b"x"))
    assert _denied(lambda: s3.put_object(Bucket=other, Key=f"{own}x", Body=b"x"))
    assert _denied(lambda: s3.get_object(Bucket=other, Key=f"{own}x"))
    assert _denied(lambda: s3.delete_bucket(Bucket=bucket))
    assert _denied(
        lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": []}))
    )
    assert _denied(lambda: s3.create_bucket(Bucket=f"new-{uuid.uuid4().hex[:8]}"))
    assert _denied(lambda: _client("iam", iam_moto.endpoint, *iam_moto.keys[consumer]).create_access_key())
    # Listing is limited by an `s3:prefix` condition, which moto 5.2 does not evaluate (it only
    # evaluates StringEquals, and passes no S3 condition keys); the condition itself is checked on
    # the generated document in test_each_consumer_gets_its_own_prefix_only.


def test_a_wrong_key_is_rejected(iam_moto: IamMoto) -> None:
    s3 = iam_moto.s3((iam_moto.keys["mlflow"][0], "not-the-secret"))
    with pytest.raises(ClientError):
        s3.get_object(Bucket=iam_moto.bucket, Key=f"{MLFLOW_PREFIX}seed.txt")


@pytest.mark.servers
def test_a_granted_dataset_is_readable_and_nothing_more(iam_moto: IamMoto) -> None:
    """The Airflow user's policy with a catalog dataset in the bucket (and one elsewhere): the training pods read
    that dataset, may not change it, and reach no other key outside their prefix nor the other bucket."""
    bucket, other = iam_moto.bucket, iam_moto.other
    uris = [f"s3://{bucket}/datasets/iris.csv", f"s3://{other}/datasets/iris.csv"]
    policy = prefix_policy(f"arn:aws:s3:::{bucket}", AIRFLOW_LOG_PREFIX, paths_in_bucket(bucket, uris))
    user = f"mlops-test-datasets-{uuid.uuid4().hex[:8]}"
    iam_moto.admin.create_user(UserName=user)
    iam_moto.admin.put_user_policy(UserName=user, PolicyName="artifacts", PolicyDocument=json.dumps(policy))
    created = iam_moto.admin.create_access_key(UserName=user)["AccessKey"]
    s3 = iam_moto.s3((created["AccessKeyId"], created["SecretAccessKey"]))
    owner = iam_moto.s3(iam_moto.keys["airflow"])  # writes under its prefix only: seed the keys as the admin would
    assert _denied(lambda: owner.put_object(Bucket=bucket, Key="datasets/iris.csv", Body=b"x"))
    admin_user = f"mlops-test-admin-{uuid.uuid4().hex[:8]}"
    iam_moto.admin.create_user(UserName=admin_user)
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam_moto.admin.put_user_policy(UserName=admin_user, PolicyName="admin", PolicyDocument=json.dumps(everything))
    admin_key = iam_moto.admin.create_access_key(UserName=admin_user)["AccessKey"]
    admin = iam_moto.s3((admin_key["AccessKeyId"], admin_key["SecretAccessKey"]))
    for where, key in ((bucket, "datasets/iris.csv"), (bucket, "datasets/private.csv"), (other, "datasets/iris.csv")):
        admin.put_object(Bucket=where, Key=key, Body=b"sepal_length,species\n5.1,setosa\n")
    assert s3.get_object(Bucket=bucket, Key="datasets/iris.csv")["Body"].read().startswith(b"sepal_length")
    assert _denied(lambda: s3.put_object(Bucket=bucket, Key="datasets/iris.csv", Body=b"poisoned"))
    assert _denied(lambda: s3.delete_object(Bucket=bucket, Key="datasets/iris.csv"))
    assert _denied(lambda: s3.get_object(Bucket=bucket, Key="datasets/private.csv"))
    assert _denied(lambda: s3.get_object(Bucket=bucket, Key=f"{MLFLOW_PREFIX}seed.txt"))
    assert _denied(lambda: s3.get_object(Bucket=other, Key="datasets/iris.csv"))


@pytest.mark.parametrize(("consumer", "prefix"), [("mlflow", MLFLOW_PREFIX), ("airflow", AIRFLOW_LOG_PREFIX)])
def test_rotation_replayed_in_iam_keeps_the_previous_key_working(
    iam_moto: IamMoto, rotation_states: list[dict[str, Any]], consumer: str, prefix: str
) -> None:
    """Applies the program's key slots period after period the way `pulumi up` does (a slot whose
    replacement trigger changed is deleted, then created: delete_before_replace) to a real IAM user
    in moto, which enforces the two-key limit: at every step the user has at most two keys, the new
    active key works, the previous period's key (still in unrolled pods) keeps working, and the key
    from two periods ago stops working."""
    user = iam_moto.new_user(consumer)
    live: dict[int, tuple[str, str]] = {}  # slot -> (key id, secret) in moto
    deployed: dict[int, int] = {}  # slot -> trigger of the key in `live`

    def key_count() -> int:
        return len(iam_moto.admin.list_access_keys(UserName=user)["AccessKeyMetadata"])

    def works(key: tuple[str, str]) -> bool:
        s3, name = iam_moto.s3(key), f"{prefix}rotation/{uuid.uuid4().hex}"
        return _error_code(lambda: s3.put_object(Bucket=iam_moto.bucket, Key=name, Body=b"x")) is None and (
            s3.get_object(Bucket=iam_moto.bucket, Key=name)["Body"].read() == b"x"
        )

    previous_active: tuple[str, str] | None = None
    for state in rotation_states:
        period, slots = state["period"], state["consumers"][consumer]["slots"]
        retired = []
        for slot in (0, 1):
            if deployed.get(slot) == slots[slot]["trigger"]:
                continue
            if slot in live:  # delete before replace
                retired.append(live.pop(slot))
                iam_moto.admin.delete_access_key(UserName=user, AccessKeyId=retired[-1][0])
            assert key_count() <= 1
            created = iam_moto.admin.create_access_key(UserName=user)["AccessKey"]
            live[slot], deployed[slot] = (created["AccessKeyId"], created["SecretAccessKey"]), slots[slot]["trigger"]
            assert key_count() <= 2
        assert key_count() == 2
        # a third key is refused: replacing a slot create-before-delete could not work
        assert _error_code(lambda: iam_moto.admin.create_access_key(UserName=user)) == "LimitExceeded"
        active = live[period % 2]
        assert works(active), "the new active key works"
        if previous_active is not None:
            assert previous_active != active and works(previous_active), "pods not yet rolled keep working"
            assert len(retired) == 1 and not works(retired[0]), "the key from two periods ago is revoked"
        previous_active = active


# --- bootstrap SQL, for real (local PostgreSQL) ------------------------------------------------------
def _secret_files(tmp_path: Path, passwords: dict[str, str], admin_password: str | None = None) -> Path:
    """The bootstrap Secret as the Job sees it mounted: one file per key, no trailing newline."""
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    for role, pw in passwords.items():
        (folder / password_variable(role).upper()).write_text(pw)
    if admin_password is not None:
        (folder / ADMIN_PASSWORD_KEY).write_text(admin_password)
    return folder


def _run_sql(sql: str, user: str, passwords: dict[str, str], tmp_path: Path) -> None:
    """What the bootstrap Job runs (components.database.bootstrap_script): psql reading the admin's password from a
    pgpass file and the roles' from the Secret's files, none of them in its arguments or environment."""
    secrets = _secret_files(tmp_path, passwords, admin_password="admin:pw\\with-escapes")
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir(exist_ok=True)
    (sql_dir / "bootstrap.sql").write_text(sql)
    (sql_dir / "passwords.sql").write_text(password_sql(list(passwords), str(secrets)))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    script = bootstrap_script(list(passwords), str(secrets), str(sql_dir))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PGHOST": "127.0.0.1",
        "PGUSER": user,
        "PGDATABASE": "postgres",
    }
    env["PGPORT"] = os.environ.get("MLOPS_TEST_PG_PORT", "5432")
    result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    # the admin's password went through the pgpass file, escaped as libpq reads it, readable by the owner only
    pgpass = home / ".pgpass"
    assert pgpass.read_text() == "*:*:*:*:admin\\:pw\\\\with-escapes\n"
    assert pgpass.stat().st_mode & 0o077 == 0


@pytest.mark.servers
def test_the_bootstrap_stops_before_psql_when_a_password_file_is_empty(
    app_names: tuple[str, str, str], tmp_path: Path
) -> None:
    mlflow, _, _ = app_names
    with pytest.raises(AssertionError, match="missing or empty"):
        _run_sql(
            bootstrap_sql(
                [AppDatabase(mlflow, mlflow, "ns", "s", "username-password")], rotation_plan(ROTATION_START, 30)
            ),
            "postgres",
            {login_role(mlflow, 0): "pw-" + uuid.uuid4().hex, login_role(mlflow, 1): ""},
            tmp_path,
        )
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (mlflow,)).fetchone() is None


def _has_password(role: str, password: str) -> bool:
    """Whether `role`'s SCRAM-SHA-256 verifier in pg_authid is that of `password` (the server trusts local
    connections here, so logging in would prove nothing)."""
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert row is not None and row[0] is not None and row[0].startswith("SCRAM-SHA-256$"), row
    iterations, salt, stored = re.match(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):", row[0]).groups()  # type: ignore[union-attr]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored


def _can_connect(role: str, database: str) -> bool:
    try:
        with psycopg.connect(host="127.0.0.1", user=role, dbname=database, connect_timeout=5):
            return True
    except psycopg.OperationalError as exc:
        assert "permission denied" in str(exc), exc
        return False


@pytest.fixture
def app_names(postgres_available: Any) -> Iterator[tuple[str, str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = (f"mlflow_t{suffix}", f"airflow_t{suffix}", f"rds_master_t{suffix}")
    yield names
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        for name in names[:2]:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for name in names[:2]:
            for slot in (0, 1):
                conn.execute(f"DROP ROLE IF EXISTS {login_role(name, slot)}")
        for name in names:
            conn.execute(f"DROP ROLE IF EXISTS {name}")


@pytest.mark.servers
@pytest.mark.parametrize("as_superuser", [True, False], ids=["superuser", "rds-like-master"])
def test_bootstrap_sql_is_idempotent_and_isolates_roles(
    app_names: tuple[str, str, str], as_superuser: bool, tmp_path: Path
) -> None:
    mlflow, airflow, master = app_names
    apps = [
        AppDatabase(mlflow, mlflow, "ns", "s", "username-password"),
        AppDatabase(airflow, airflow, "ns", "s", "sqlalchemy-url"),
    ]
    user = "postgres"
    if not as_superuser:
        # like the RDS master user: may create roles and databases, is no superuser
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {master} LOGIN CREATEROLE CREATEDB")
        user = master
    sql = bootstrap_sql(apps, rotation_plan(ROTATION_START, 30))
    passwords = {login_role(a.role, k): "pw-" + uuid.uuid4().hex for a in apps for k in (0, 1)}
    _run_sql(sql, user, passwords, tmp_path)
    _run_sql(sql, user, passwords, tmp_path)  # a second run changes nothing and does not fail
    for k in (0, 1):
        mlflow_login, airflow_login = login_role(mlflow, k), login_role(airflow, k)
        # each login role's password is the one of its file, and no other
        assert _has_password(mlflow_login, passwords[mlflow_login])
        assert _has_password(airflow_login, passwords[airflow_login])
        assert not _has_password(mlflow_login, passwords[airflow_login])
        assert _can_connect(mlflow_login, mlflow) and _can_connect(airflow_login, airflow)
        assert not _can_connect(mlflow_login, airflow) and not _can_connect(airflow_login, mlflow)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        owners: dict[str, str] = dict(
            conn.execute(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname IN (%s, %s)", (mlflow, airflow)
            ).fetchall()
        )
        assert owners == {mlflow: mlflow, airflow: airflow}
        flags = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s", (mlflow,)
        ).fetchone()
        assert flags == (False, False, False)
        logins = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (mlflow,)).fetchone()
        assert logins == (False,), "the owner role does not log in"
