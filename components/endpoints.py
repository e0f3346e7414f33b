"""The endpoints contract on the cluster: one ConfigMap and two Secrets per consuming namespace."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_kubernetes.core.v1 import ConfigMap, Secret
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.namespaces import NamespaceRef
from components.naming import labels
from services.common import contract
from stacks.settings import Secret as SecretSetting


@dataclass(frozen=True)
class EndpointsArgs:
    """`consumers`: consumer name (airflow, serving) -> namespace. `values`: one value per
    `contract.CONFIGMAP_VARS` variable (keyed by the variable's name); `slack_webhook` the optional
    webhook secret setting; `mlflow_credentials` the MLflow user of the consumers when MLflow has
    basic auth."""

    consumers: Mapping[str, NamespaceRef]
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
    `mlops-mlflow-credentials` (the MLflow client's user and password, and MLflow's own credentials file
    `credentials` made of them; empty when MLflow has no auth). The keys are the variables' names; pods mount the
    Secrets as files (never as environment: `<NAME>_FILE` names the file, MLflow's file goes under $HOME/.mlflow).
    The names are the contract's (`services/common/contract.py`).

    Exports the attributes below.
    """

    configmap_name: str
    reload_token_secret: str
    slack_secret: str
    mlflow_credentials_secret: str
    reload_token: pulumi.Output[str]
    """The serving admin API's bearer token (secret)."""

    def __init__(self, name: str, args: EndpointsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:Endpoints", name, None, opts)
        self.configmap_name = contract.ENDPOINTS_CONFIGMAP
        self.reload_token_secret = contract.RELOAD_TOKEN_SECRET
        self.slack_secret = contract.SLACK_SECRET
        self.mlflow_credentials_secret = contract.MLFLOW_CREDENTIALS_SECRET
        token = random.RandomPassword(
            f"{name}-reload-token", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self.reload_token = pulumi.Output.secret(token.result)
        for consumer, namespace in args.consumers.items():
            self._objects(f"{name}-{consumer}", namespace, args)
        self.register_outputs(
            {
                "configmap_name": self.configmap_name,
                "reload_token_secret": self.reload_token_secret,
                "slack_secret": self.slack_secret,
                "mlflow_credentials_secret": self.mlflow_credentials_secret,
                "reload_token": self.reload_token,
            }
        )

    def _objects(self, prefix: str, namespace: NamespaceRef, args: EndpointsArgs) -> None:
        """The ConfigMap and the three Secrets in one consumer's namespace."""
        child = pulumi.ResourceOptions(parent=self)
        endpoint_labels = labels(component="endpoints")
        webhook = args.slack_webhook.output() if args.slack_webhook else pulumi.Output.secret("")
        credentials: dict[str, pulumi.Input[str]] = {}
        if args.mlflow_credentials is not None:
            username, password = args.mlflow_credentials
            credentials = {
                contract.MLFLOW_TRACKING_USERNAME.name: pulumi.Output.secret(username),
                contract.MLFLOW_TRACKING_PASSWORD.name: pulumi.Output.secret(password),
                # MLflow's own credentials file, which pods mount under $HOME/.mlflow
                contract.MLFLOW_CREDENTIALS_KEY: pulumi.Output.secret(
                    pulumi.Output.from_input(password).apply(lambda pw: contract.mlflow_credentials_ini(username, pw))
                ),
            }
        ConfigMap(
            f"{prefix}-configmap",
            metadata=ObjectMetaArgs(name=self.configmap_name, namespace=namespace.output, labels=endpoint_labels),
            data={var.name: args.values[var.name] for var in contract.CONFIGMAP_VARS},
            opts=child,
        )
        secrets = {
            "reload-token": (self.reload_token_secret, {contract.RELOAD_TOKEN.name: self.reload_token}),
            "slack": (self.slack_secret, {contract.SLACK_WEBHOOK_URL.name: webhook}),
            "mlflow-credentials": (self.mlflow_credentials_secret, credentials),
        }
        for suffix, (secret_name, string_data) in secrets.items():
            Secret(
                f"{prefix}-{suffix}",
                metadata=ObjectMetaArgs(name=secret_name, namespace=namespace.output, labels=endpoint_labels),
                type="Opaque",
                string_data=string_data,
                opts=child,
            )
