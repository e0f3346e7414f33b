"""The endpoints contract on the cluster: one ConfigMap and two Secrets per consuming namespace."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_kubernetes.core.v1 import ConfigMap, Secret
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from services.common import contract
from stacks.settings import Secret as SecretSetting


@dataclass(frozen=True)
class EndpointsArgs:
    """`consumers`: consumer name (airflow, serving) -> namespace. `values`: one value per
    `contract.CONFIGMAP_VARS` variable (keyed by the variable's name); `slack_webhook` the optional
    webhook secret setting; `mlflow_credentials` the MLflow user of the consumers when MLflow has
    basic auth."""

    consumers: Mapping[str, pulumi.Input[str]]
    values: Mapping[str, pulumi.Input[str]]
    slack_webhook: SecretSetting | None = None
    mlflow_credentials: tuple[str, pulumi.Output[str]] | None = None  # (username, secret password)

    def __post_init__(self) -> None:
        expected = {v.name for v in contract.CONFIGMAP_VARS}
        missing, extra = expected - set(self.values), set(self.values) - expected
        if missing or extra:
            raise ValueError(
                f"endpoints values must be exactly the contract's: missing {sorted(missing)}, unknown {sorted(extra)}"
            )


class Endpoints(pulumi.ComponentResource):
    """Builds, in every consuming namespace, the ConfigMap `mlops-endpoints` whose keys are exactly
    the contract's endpoint variables, the Secret `mlops-serving-reload-token` (one random token,
    48 characters, shared by serving and its callers) and the Secret `mlops-slack-webhook` (empty
    when no webhook is configured, which the alert helper treats as "log only") and the Secret
    `mlops-mlflow-credentials` (the MLflow client's user and password; empty when MLflow has no
    auth, so the variables stay unset). Pods take them with `envFrom`, so the variable names are
    the keys.

    Exports `configmap_name`, `reload_token_secret`, `slack_secret`, `mlflow_credentials_secret`
    and `reload_token` (secret).
    """

    def __init__(self, name: str, args: EndpointsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:Endpoints", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        token = random.RandomPassword(f"{name}-reload-token", length=48, special=False, opts=child)
        self.reload_token: pulumi.Output[str] = pulumi.Output.secret(token.result)
        webhook = args.slack_webhook.output() if args.slack_webhook else pulumi.Output.secret("")
        labels = {"app.kubernetes.io/part-of": "mlops-platform", "app.kubernetes.io/component": "endpoints"}
        data = {var.name: args.values[var.name] for var in contract.CONFIGMAP_VARS}
        credentials: dict[str, pulumi.Input[str]] = {}
        if args.mlflow_credentials is not None:
            username, password = args.mlflow_credentials
            credentials = {
                contract.MLFLOW_TRACKING_USERNAME.name: pulumi.Output.secret(username),
                contract.MLFLOW_TRACKING_PASSWORD.name: pulumi.Output.secret(password),
            }
        for consumer, namespace in args.consumers.items():
            ConfigMap(
                f"{name}-{consumer}-configmap",
                metadata=ObjectMetaArgs(name=contract.ENDPOINTS_CONFIGMAP, namespace=namespace, labels=labels),
                data=data,
                opts=child,
            )
            Secret(
                f"{name}-{consumer}-reload-token",
                metadata=ObjectMetaArgs(name=contract.RELOAD_TOKEN_SECRET, namespace=namespace, labels=labels),
                type="Opaque",
                string_data={contract.RELOAD_TOKEN.name: self.reload_token},
                opts=child,
            )
            Secret(
                f"{name}-{consumer}-slack",
                metadata=ObjectMetaArgs(name=contract.SLACK_SECRET, namespace=namespace, labels=labels),
                type="Opaque",
                string_data={contract.SLACK_WEBHOOK_URL.name: webhook},
                opts=child,
            )
            Secret(
                f"{name}-{consumer}-mlflow-credentials",
                metadata=ObjectMetaArgs(name=contract.MLFLOW_CREDENTIALS_SECRET, namespace=namespace, labels=labels),
                type="Opaque",
                string_data=credentials,
                opts=child,
            )
        self.configmap_name = contract.ENDPOINTS_CONFIGMAP
        self.register_outputs(
            {
                "configmap_name": contract.ENDPOINTS_CONFIGMAP,
                "reload_token_secret": contract.RELOAD_TOKEN_SECRET,
                "slack_secret": contract.SLACK_SECRET,
                "mlflow_credentials_secret": contract.MLFLOW_CREDENTIALS_SECRET,
                "reload_token": self.reload_token,
            }
        )
