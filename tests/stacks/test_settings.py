"""Typed stack settings: defaults, validation messages naming file and key, unknown keys, secrets; the model
catalog's mistakes named by their key path under `models` or `profiles`, the single-model keys refused; each model's
serving settings accept exactly the aliases, routings and default workers the serving service accepts."""

from __future__ import annotations

import json

import pytest

from harness.run import read_stack_file
from stacks.settings import PROJECT, Secret, SettingsError, declared, load_settings, settings_table

P = f"{PROJECT}:"
# One model: the smallest valid catalog entry.
IRIS = {"training": {"entrypoint": "iris_model.train:train"}, "gate": {"metric": "test_accuracy"}}
MINIMAL = {
    f"{P}ingress.domain": "dev.example.internal",
    f"{P}nfs.server": "10.0.0.5",
    f"{P}nfs.path": "/exports/mlops",
    f"{P}airflow.gitRepo": "https://github.com/acme/mlops.git",
    f"{P}models": json.dumps({"iris": IRIS}),
}
PROD_NETWORK = {
    f"{P}database.vpcId": "vpc-0abc",
    f"{P}database.subnetIds": '["subnet-0a", "subnet-0b"]',
    f"{P}database.allowedCidrs": '["10.40.0.0/16"]',
}


def problems_of(stack: str, config: dict[str, str], secret_keys: set[str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(stack, config, secret_keys or set())
    return info.value.problems


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stack_files_load(stack: str) -> None:
    cfg = read_stack_file(stack)
    s = load_settings(stack, cfg.config, set(cfg.secret_keys), cfg.source)
    assert s.environment == stack
    assert s.database.mode == ("rds" if stack == "prod" else "in-cluster")
    assert s.namespace("mlflow") == f"mlops-{stack}-mlflow"


def test_defaults_depend_on_environment() -> None:
    dev = load_settings("dev", MINIMAL)
    prod = load_settings("prod", {**MINIMAL, **PROD_NETWORK})
    assert (dev.database.mode, prod.database.mode) == ("in-cluster", "rds")
    assert (dev.database.multi_az, prod.database.multi_az) == (False, True)
    assert (dev.database.deletion_protection, prod.database.deletion_protection) == (False, True)
    assert prod.database.backup_retention_days >= 7
    assert dev.kubernetes.min_version == "1.30"
    assert dev.artifacts.key_rotation_days == 30


def test_invalid_choice_names_file_key_and_value() -> None:
    problems = problems_of("prod", {**MINIMAL, **PROD_NETWORK, f"{P}database.mode": "rdss"})
    assert problems == [
        'Pulumi.prod.yaml: mlops-platform:database.mode must be one of rds, in-cluster, external; got "rdss"'
    ]


def test_misspelled_key_is_reported_with_suggestion() -> None:
    problems = problems_of("dev", {**MINIMAL, f"{P}databse.mode": "rds"})
    assert len(problems) == 1
    assert problems[0].startswith("Pulumi.dev.yaml: mlops-platform:databse.mode is not a known setting")
    assert "did you mean mlops-platform:database.mode" in problems[0]


def test_other_namespaces_are_not_ours() -> None:
    load_settings("dev", {**MINIMAL, "aws:region": "eu-west-1", "kubernetes:context": "kind"})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("artifacts.keyRotationDays", "0", "must be >= 1"),
        ("artifacts.keyRotationDays", "thirty", "must be a whole number"),
        ("database.backupRetentionDays", "3", "must be >= 7"),
        ("database.storageSize", "ten gigs", "must be a Kubernetes quantity"),
        ("database.allowedCidrs", '["0.0.0.0/0"]', "must not admit the whole internet"),
        ("kubernetes.minVersion", "1.20", "must match"),
        ("mlflow.basicAuth", "yes", "must be true or false"),
        ("airflow.imageTag", "latest", "must be a pinned tag"),
        ("ingress.domain", "Not A Domain", "must match"),
        ("models", "[1, 2]", "must be an object"),
    ],
)
def test_each_validation_names_the_key(key: str, value: str, expected: str) -> None:
    problems = problems_of("dev", {**MINIMAL, f"{P}{key}": value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"Pulumi.dev.yaml: {P}{key} ")
    assert expected in problems[0]


def test_missing_required_keys_are_all_reported() -> None:
    problems = problems_of("dev", {})
    keys = sorted(p.split()[1] for p in problems)
    assert keys == sorted(f"{P}{k}" for k in ("airflow.gitRepo", "ingress.domain", "models", "nfs.path", "nfs.server"))


def test_cross_key_rules() -> None:
    problems = problems_of("prod", {**MINIMAL})
    assert any("database.subnetIds needs at least two subnets" in p for p in problems)
    assert any("database.vpcId is required" in p for p in problems)
    problems = problems_of("prod", {**MINIMAL, **PROD_NETWORK, f"{P}protect": "false"})
    assert any("protect must stay true in prod" in p for p in problems)


def test_secret_settings_must_be_encrypted_and_never_print() -> None:
    key = f"{P}alerts.slackWebhookUrl"
    url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
    problems = problems_of("dev", {**MINIMAL, key: url})
    assert problems == [
        f"Pulumi.dev.yaml: {key} is a secret; store it with `pulumi config set --secret alerts.slackWebhookUrl ...`"
        " (it is in plaintext now)"
    ]
    assert url not in problems[0]
    s = load_settings("dev", {**MINIMAL, key: url}, {key})
    assert isinstance(s.alerts.slack_webhook_url, Secret)
    assert s.alerts.slack_webhook_url.reveal() == url
    assert url not in repr(s) and url not in str(s.alerts)


def test_every_setting_is_documented_once() -> None:
    keys = [key for key, _, _ in declared()]
    assert len(keys) == len(set(keys))
    table = settings_table()
    for key in keys:
        assert f"`{P}{key}`" in table
