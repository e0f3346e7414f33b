"""The training contract: the environment in which the platform runs a model's training entrypoint.

The runner (`dags/mlops_tasks/runner.py`) builds this environment and the SDK (`services.common.training_sdk`)
reads it; model code needs neither module, but the SDK spares it the parsing. MLflow's own variables are used
where MLflow reads them natively: `mlflow.start_run()` resumes the run of `MLFLOW_RUN_ID` (the run the platform
created for the DAG run) inside the experiment of `MLFLOW_EXPERIMENT_NAME`, against `MLFLOW_TRACKING_URI`.

docs/models.md holds `markdown_table()` (a test keeps it in sync). Only the standard library and
`services.common.contract` are imported here.
"""

from __future__ import annotations

import dataclasses

from services.common import contract
from services.common.contract import EnvVar

# --- MLflow's own variables ---------------------------------------------------------------------
TRACKING_URI = dataclasses.replace(
    contract.MLFLOW_TRACKING_URI, description="MLflow tracking URL (MLflow's own variable: the client reads it)."
)
RUN_ID = EnvVar(
    "MLFLOW_RUN_ID",
    "The MLflow run the platform created for this DAG run; `mlflow.start_run()` resumes it (MLflow's own variable).",
)
EXPERIMENT_NAME = EnvVar("MLFLOW_EXPERIMENT_NAME", "The model's experiment, `mlops/<model>` (MLflow's own variable).")

# --- the platform's variables --------------------------------------------------------------------
MODEL_NAME = dataclasses.replace(contract.MODEL_NAME, description="The catalog name of the model being trained.")
PARAMS = EnvVar(
    "MLOPS_TRAINING_PARAMS",
    "The run's params as a JSON object: the catalog's defaults overridden by the DAG run's params. "
    "The platform has already logged them on the run.",
)
DATASET_URI = EnvVar(
    "MLOPS_DATASET_URI",
    "The dataset to train on, a URI (the SDK reads CSV from a path, `file://` or `s3://`); unset = the code's own "
    "data.",
)
GATE_METRIC = EnvVar("MLOPS_GATE_METRIC", "The metric the code must log on the run: the quality gate reads it.")
GATE_DIRECTION = EnvVar("MLOPS_GATE_DIRECTION", "`max` or `min`: whether a higher or a lower gate metric is better.")
CHAMPION_MODEL_URI = EnvVar(
    "MLOPS_CHAMPION_MODEL_URI",
    "The model URI (`models:/<model>/<version>`) of the version that holds the alias this run may replace; the "
    "code scores it on its own held-out data and logs `champion.<gate metric>`, which the gate compares with when "
    "`gate.minImprovement` is set.",
)
OUTPUT_DIR = EnvVar(
    "MLOPS_TRAINING_OUTPUT_DIR",
    "An empty writable directory for the run's scratch files (the source checkout may be read-only); "
    "deleted after the run.",
)

# Set by the platform, in this order (OPTIONAL_VARS only when they have a value).
TRAINING_VARS: tuple[EnvVar, ...] = (
    TRACKING_URI,
    RUN_ID,
    EXPERIMENT_NAME,
    MODEL_NAME,
    PARAMS,
    DATASET_URI,
    GATE_METRIC,
    GATE_DIRECTION,
    CHAMPION_MODEL_URI,
    OUTPUT_DIR,
)
# Set only when there is something to hand over: a dataset URI, a champion to compare with.
OPTIONAL_VARS: tuple[EnvVar, ...] = (DATASET_URI, CHAMPION_MODEL_URI)
# The champion's score on the run's own held-out data is logged as `champion.<gate metric>`.
CHAMPION_METRIC_PREFIX = "champion."
# MLflow client credentials: passed through from the platform's environment when set.
CREDENTIAL_VARS: tuple[EnvVar, ...] = contract.MLFLOW_CLIENT_VARS

# Nothing else of the platform's environment reaches model code (no serving token, no Slack webhook, no
# Airflow settings) but these: the system basics, TLS and proxy settings, MLflow's client tuning, cloud
# credentials and endpoints for reading datasets (`AWS_*`, incl. IRSA's role and token file), GPU selection.
PASSTHROUGH_NAMES: frozenset[str] = frozenset(
    {
        "HOME",
        "USER",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_INSECURE_TLS",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        contract.MLFLOW_S3_ENDPOINT_URL.name,
        contract.MLFLOW_PROXY_MULTIPART_DOWNLOAD.name,
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
    }
)
PASSTHROUGH_PREFIXES: tuple[str, ...] = ("LC_", "AWS_")


def champion_metric(metric: str) -> str:
    """The name under which the code logs the champion's `metric` (scored on the run's held-out data)."""
    return f"{CHAMPION_METRIC_PREFIX}{metric}"


def passes_through(name: str) -> bool:
    """Whether the platform's variable `name` reaches the training process unchanged."""
    return (
        name in PASSTHROUGH_NAMES
        or name.startswith(PASSTHROUGH_PREFIXES)
        or name in {var.name for var in CREDENTIAL_VARS}
    )


def markdown_table() -> str:
    """The table of docs/models.md (a test keeps the page in sync): `python -m services.common.training_contract`."""
    when = {
        DATASET_URI.name: "when the catalog or the run names a dataset",
        CHAMPION_MODEL_URI.name: "when the alias has a holder",
    }
    when.update({var.name: "when MLflow needs auth" for var in CREDENTIAL_VARS})
    header = ("| variable | set | description |", "| --- | --- | --- |")
    return "\n".join(
        header
        + tuple(
            f"| `{var.name}` | {when.get(var.name, 'always')} | {var.description} |"
            for var in TRAINING_VARS + CREDENTIAL_VARS
        )
    )


if __name__ == "__main__":
    print(markdown_table())
