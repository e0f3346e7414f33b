"""The endpoints contract: every environment variable the Pulumi program writes and the serving
service, the DAGs and `make demo` read. Defined once; imported by all of them.

The program writes the non-secret variables into one ConfigMap per consuming namespace
(`ENDPOINTS_CONFIGMAP`) and the secret ones into Secrets (`RELOAD_TOKEN_SECRET`, `SLACK_SECRET`,
`MLFLOW_CREDENTIALS_SECRET`).

Credentials reach a pod as FILES, never as environment values or arguments: the pod mounts the Secret and the
variable `<NAME>_FILE` (`EnvVar.file_variable`) names the file; `EnvVar.read_secret()` prefers that file over the
plain variable, which stays accepted for local use (`make demo`, tests). MLflow's client credentials use MLflow's
own file, `$HOME/.mlflow/credentials` (`MLFLOW_CREDENTIALS_FILE`, an INI section `[mlflow]` with
`mlflow_tracking_username` and `mlflow_tracking_password`), which the MLflow client reads on every request
(`mlflow.utils.credentials`); MLflow's own variables still win where set. AWS credentials use boto's
`AWS_SHARED_CREDENTIALS_FILE`.
A test checks that the ConfigMap's keys equal `CONFIGMAP_VARS` and that nothing outside this
module spells these names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.common.api_rules import (
    EVENTS_POLL_SECONDS,
    RATE_LIMIT_BURST,
    RATE_LIMIT_PER_SECOND,
    RECONCILE_SECONDS,
    SECONDS_PER_DAY,
    TOKEN_MAX_TTL_DAYS,
    TOKEN_TTL_DAYS,
)

FILE_SUFFIX = "_FILE"


@dataclass(frozen=True)
class EnvVar:
    """One environment variable of the contract."""

    name: str
    description: str
    secret: bool = False
    file: bool = False  # may be given as a file (`<NAME>_FILE`) although it is no secret (e.g. a rotating role)

    @property
    def file_variable(self) -> str:
        """The variable naming the file that holds this one's value: `<NAME>_FILE`."""
        return f"{self.name}{FILE_SUFFIX}"

    def get(self, default: str | None = None) -> str | None:
        value = os.environ.get(self.name)
        return value if value not in (None, "") else default

    def read_secret(self, default: str | None = None) -> str | None:
        """The value from the file `<NAME>_FILE` names (without its trailing newline) when that is set, else the
        plain variable's (local use), else `default`. Read again on every call: a mounted Secret's update shows.
        OSError when the named file cannot be read."""
        path = os.environ.get(self.file_variable) if (self.secret or self.file) else None
        if path:
            text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            return text or default
        return self.get(default)

    def require(self) -> str:
        value = self.get()
        if value is None:
            raise RuntimeError(f"environment variable {self.name} is not set: {self.description}")
        return value


# --- endpoints (ConfigMap `mlops-endpoints`, in the Airflow and serving namespaces) -------------
MLFLOW_TRACKING_URI = EnvVar("MLFLOW_TRACKING_URI", "In-cluster MLflow tracking URL (MLflow's own variable name).")
MLFLOW_EXTERNAL_URL = EnvVar("MLOPS_MLFLOW_EXTERNAL_URL", "MLflow UI/API URL through the TLS ingress.")
AIRFLOW_URL = EnvVar("MLOPS_AIRFLOW_URL", "Airflow API server URL through the TLS ingress.")
ARTIFACT_BUCKET = EnvVar("MLOPS_ARTIFACT_BUCKET", "S3 bucket of the artifact store.")
MLFLOW_ARTIFACT_PREFIX = EnvVar("MLOPS_MLFLOW_ARTIFACT_PREFIX", "Key prefix of MLflow artifacts.")
AIRFLOW_LOG_PREFIX = EnvVar("MLOPS_AIRFLOW_LOG_PREFIX", "Key prefix of Airflow task logs.")
DATABASE_HOST = EnvVar("MLOPS_DATABASE_HOST", "Host name of the Postgres metadata database.")
MLFLOW_NAMESPACE = EnvVar("MLOPS_MLFLOW_NAMESPACE", "Kubernetes namespace of MLflow.")
AIRFLOW_NAMESPACE = EnvVar("MLOPS_AIRFLOW_NAMESPACE", "Kubernetes namespace of Airflow.")
SERVING_NAMESPACE = EnvVar("MLOPS_SERVING_NAMESPACE", "Kubernetes namespace of the models' serving deployments.")
# Each model's serving URLs are not variables: they are in the model catalog (MODEL_CATALOG below), under the
# keys CATALOG_SERVING_URL_KEY and CATALOG_RELOAD_URL_KEY of the model's entry.

# --- secrets (Secrets `mlops-serving-reload-token` and `mlops-slack-webhook`) -----------------
RELOAD_TOKEN = EnvVar("MLOPS_SERVING_RELOAD_TOKEN", "Bearer token of the serving admin API (reload).", secret=True)
SLACK_WEBHOOK_URL = EnvVar(
    "MLOPS_SLACK_WEBHOOK_URL",
    "Slack incoming-webhook URL for alerts; unset = alerts are logged only.",
    secret=True,
)

# --- MLflow client credentials (Secret `mlops-mlflow-credentials`, in the Airflow and serving
# namespaces; MLflow's own variable names, read by the MLflow client). The Secret is empty when
# MLflow runs without basic auth, so the variables are then unset.
MLFLOW_TRACKING_USERNAME = EnvVar(
    "MLFLOW_TRACKING_USERNAME",
    "MLflow basic-auth user of the DAGs and the serving service (an ordinary user, not the admin); unset = no auth.",
)
MLFLOW_TRACKING_PASSWORD = EnvVar("MLFLOW_TRACKING_PASSWORD", "Password of that MLflow user.", secret=True)

# --- the S3 API of the artifact store, in its consumers' own variable names (MLflow's and boto3's). On AWS only the
# region and the keys are set; an S3-compatible store (MinIO, Ceph RGW: `artifacts.mode: s3Compatible`) adds its
# endpoint and, for a private CA, the CA file. services/common/object_store.py builds them (and Airflow's
# connection extra); the keys come from each consumer's key Secret, whose keys are these names.
MLFLOW_S3_ENDPOINT_URL = EnvVar(
    "MLFLOW_S3_ENDPOINT_URL", "S3 endpoint of MLflow's S3 artifact repository (MLflow's own name); unset = AWS."
)
AWS_ENDPOINT_URL_S3 = EnvVar(
    "AWS_ENDPOINT_URL_S3", "S3 endpoint of every boto3 client (boto3's own name); unset = AWS."
)
AWS_CA_BUNDLE = EnvVar(
    "AWS_CA_BUNDLE",
    "Path of the PEM CA bundle boto3 verifies the S3 endpoint with (mounted; boto3's own name); unset = system CAs.",
)
AWS_DEFAULT_REGION = EnvVar("AWS_DEFAULT_REGION", "Region of the artifact bucket (boto3's own name).")
AWS_ACCESS_KEY_ID = EnvVar("AWS_ACCESS_KEY_ID", "S3 access key id of this consumer (boto3's own name).")
AWS_SECRET_ACCESS_KEY = EnvVar(
    "AWS_SECRET_ACCESS_KEY", "S3 secret access key of this consumer (boto3's own name).", secret=True
)
# MLflow's own client switch. With proxied artifacts in S3, MLflow 3.17's server advertises presigned downloads and
# its clients then fetch artifacts straight from the store (its endpoint, its CA); "false" keeps every download
# going through the tracking server, so clients need the tracking URI only (object_store.proxied_client_env).
MLFLOW_PROXY_MULTIPART_DOWNLOAD = EnvVar(
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
    "Whether MLflow clients download proxied artifacts straight from the store by presigned URLs (MLflow's own name);"
    " false = through the tracking server.",
)
MLFLOW_S3_ADDRESSING_STYLE = EnvVar(
    "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "MLflow's S3 addressing style: path for artifacts.pathStyle (MLflow's own)."
)
AWS_CONFIG_FILE = EnvVar(
    "AWS_CONFIG_FILE", "Path of the mounted AWS config file carrying the S3 addressing style (boto3's own)."
)
# Where the program mounts an S3-compatible store's CA and the AWS config file (ConfigMap S3_CLIENT_CONFIGMAP) in
# the pods of its consumers (MLflow's server, Airflow's pods incl. the training task pods, Loki).
S3_CLIENT_CONFIGMAP = "mlops-s3-client"
S3_CLIENT_MOUNT = "/etc/mlops/s3"
S3_CA_KEY = "ca.crt"
S3_AWS_CONFIG_KEY = "aws-config"

# --- serving service settings (written by the ServingService component into the pod env of each model) ----
MODEL_NAME = EnvVar("MLOPS_MODEL_NAME", "Registered model this serving deployment serves (one deployment per model).")
SERVING_ROUTING = EnvVar(
    "MLOPS_SERVING_ROUTING",
    'Routing as JSON, e.g. {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 10}.',
)
SERVING_ALIASES = EnvVar("MLOPS_SERVING_ALIASES", "Comma-separated aliases to load, e.g. champion,challenger.")
SERVING_POLL_SECONDS = EnvVar("MLOPS_SERVING_POLL_SECONDS", "Registry watcher interval in seconds.")
SERVING_LOG_DIR = EnvVar("MLOPS_SERVING_LOG_DIR", "Directory of the rotating JSON log file (NFS volume).")
SERVING_MAX_BATCH = EnvVar("MLOPS_SERVING_MAX_BATCH", "Largest number of rows accepted in one request.")
SERVING_WORKERS = EnvVar("MLOPS_SERVING_WORKERS", "uvicorn worker processes of one serving pod.")
SERVING_PORT_VAR = EnvVar("MLOPS_SERVING_PORT", "Port the serving service listens on.")
SERVING_GRPC_PORT_VAR = EnvVar(
    "MLOPS_SERVING_GRPC_PORT",
    "Port of the Open Inference Protocol (V2) gRPC service, in the same process (plaintext HTTP/2, h2c).",
)
SERVING_HOST = EnvVar("MLOPS_SERVING_HOST", "Interface the serving service binds to (default 0.0.0.0).")
SERVING_AUTH = EnvVar(
    "MLOPS_SERVING_AUTH",
    'Authentication of the prediction endpoints as JSON (services/common/serving_auth.py): {"mode": "none"} '
    '(default), {"mode": "apiKey"} or {"mode": "oidc", "issuer": "https://...", "audience": "...", "jwksUrl": ...}.',
)
SERVING_API_KEYS_FILE = EnvVar(
    "MLOPS_SERVING_API_KEYS_FILE",
    "With apiKey auth: file of the accepted keys' SHA-256 hashes, one per line (mounted from the keys Secret; "
    "re-read when it changes, so old and new keys overlap during a rotation).",
)
SERVING_MAX_IN_FLIGHT = EnvVar(
    "MLOPS_SERVING_MAX_IN_FLIGHT",
    "Most predictions in flight per serving process; one more is answered 429 with Retry-After (default 128).",
)
SERVING_SHADOW_AGREEMENT = EnvVar(
    "MLOPS_SERVING_SHADOW_AGREEMENT",
    "When a shadow's answer agrees with the primary's, as JSON (services/common/serving_rules.py Agreement): "
    '{"mode": "exact"} (default), {"mode": "absolute", "tolerance": 0.5} or {"mode": "relative", "tolerance": 0.05}.',
)
SERVING_PUBLIC_DOCS = EnvVar(
    "MLOPS_SERVING_PUBLIC_DOCS",
    "Whether /docs and /openapi.json are served: true (default) or false (then they answer 404).",
)

# --- `make demo` only: where the local MLflow keeps its data (unset = SQLite + a folder in .local/) --
DEMO_BACKEND_STORE_URI = EnvVar(
    "MLOPS_DEMO_BACKEND_STORE_URI",
    "MLflow backend store of the local demo, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/mlflow "
    "(the database must exist); unset = SQLite under .local/demo.",
)
DEMO_ARTIFACTS_DESTINATION = EnvVar(
    "MLOPS_DEMO_ARTIFACTS_DESTINATION",
    "Artifact destination of the local demo's MLflow, e.g. s3://bucket/prefix (for a non-AWS endpoint also "
    "set MLflow's MLFLOW_S3_ENDPOINT_URL and AWS credentials); unset = a folder under .local/demo.",
)

# Port of every model's serving Service (the program builds URLs from it; the image listens on
# SERVING_PORT unless MLOPS_SERVING_PORT says otherwise). The Service is named after the model
# (services.common.catalog.names(model)["k8s"]).
SERVING_PORT = 8000
# Port of the V2 gRPC service (`inference.GRPCInferenceService`) in the same process, on the same Service (port name
# `grpc`, appProtocol kubernetes.io/h2c); the image listens on it unless MLOPS_SERVING_GRPC_PORT says otherwise.
SERVING_GRPC_PORT = 8081

# --- set by the serving start command itself, not configuration (in no tuple above) -----------
# prometheus_client's own variable: `python -m services.serving` points it at a fresh directory when it
# runs several uvicorn workers, so that /metrics adds up every worker's samples.
PROMETHEUS_MULTIPROC_DIR = EnvVar(
    "PROMETHEUS_MULTIPROC_DIR", "prometheus_client multiprocess directory (set by the serving start command)."
)

# --- the model catalog (ConfigMap `mlops-model-catalog`, mounted in every Airflow component) ---------
# The program writes `Catalog.for_airflow()` (services.common.catalog) with each model's serving URLs as JSON
# under MODEL_CATALOG_KEY; the DAG factory reads the file MODEL_CATALOG names and generates one DAG per model.
MODEL_CATALOG = EnvVar(
    "MLOPS_MODEL_CATALOG",
    "Path of the model catalog JSON (ConfigMap mlops-model-catalog mounted in every Airflow component); "
    "the DAG factory generates one training and one rollback DAG per model from it.",
)
MODEL_CATALOG_CONFIGMAP = "mlops-model-catalog"
MODEL_CATALOG_KEY = "catalog.json"
MODEL_CATALOG_MOUNT = "/opt/mlops/catalog"
# Keys of each model's entry in that JSON: the in-cluster base URLs of its serving deployment (predictions) and of
# that deployment's admin API (reload; not reachable from outside the cluster).
CATALOG_SERVING_URL_KEY = "serving_url"
CATALOG_RELOAD_URL_KEY = "reload_url"

# --- the platform API (services/api; written by the PlatformApi component into its pod env) ------------
# Besides these it reads MLFLOW_TRACKING_URI, MLOPS_DATABASE_HOST, MLOPS_MODEL_CATALOG and the MLflow client vars.
API_DATABASE_PORT = EnvVar("MLOPS_API_DATABASE_PORT", "Port of the API's PostgreSQL database (default 5432).")
API_DATABASE_NAME = EnvVar("MLOPS_API_DATABASE_NAME", "Name of the API's own database.")
API_DATABASE_USER = EnvVar("MLOPS_API_DATABASE_USER", "Role the API connects as (owner of its database).", file=True)
API_DATABASE_PASSWORD = EnvVar("MLOPS_API_DATABASE_PASSWORD", "Password of that role.", secret=True)
API_DATABASE_SSLMODE = EnvVar(
    "MLOPS_API_DATABASE_SSLMODE", "libpq sslmode of the API's database connections (default prefer)."
)
API_DATABASE_SSLROOTCERT = EnvVar(
    "MLOPS_API_DATABASE_SSLROOTCERT",
    "libpq sslrootcert of the API's database connections: path of the server's CA (mounted); unset = libpq's default.",
)
API_ADMIN_TOKEN = EnvVar(
    "MLOPS_API_ADMIN_TOKEN",
    "The API's admin bearer token (all scopes; creates and revokes scoped tokens).",
    secret=True,
)
API_AIRFLOW_URL = EnvVar("MLOPS_API_AIRFLOW_URL", "In-cluster base URL of the Airflow API server the API calls.")
API_AIRFLOW_USERNAME = EnvVar("MLOPS_API_AIRFLOW_USERNAME", "Airflow user the API triggers and reads DAG runs as.")
API_AIRFLOW_PASSWORD = EnvVar("MLOPS_API_AIRFLOW_PASSWORD", "Password of that Airflow user.", secret=True)
API_HOST = EnvVar("MLOPS_API_HOST", "Interface the API binds to (default 0.0.0.0).")
API_PORT_VAR = EnvVar("MLOPS_API_PORT", "Port the API listens on (default 8080).")
API_RECONCILE_SECONDS = EnvVar(
    "MLOPS_API_RECONCILE_SECONDS",
    f"Interval of the reconciler that brings unfinished runs up to date (default {RECONCILE_SECONDS.default:g}).",
)
API_EVENTS_POLL_SECONDS = EnvVar(
    "MLOPS_API_EVENTS_POLL_SECONDS",
    f"How often an open event stream looks for new events (default {EVENTS_POLL_SECONDS.default:g}).",
)
API_ADMIN_TOKEN_PREVIOUS = EnvVar(
    "MLOPS_API_ADMIN_TOKEN_PREVIOUS",
    "The previous admin token, still accepted during a rotation of MLOPS_API_ADMIN_TOKEN (unset or empty = none).",
    secret=True,
)
API_TOKEN_TTL = EnvVar(
    "MLOPS_API_TOKEN_TTL",
    "Seconds until a new token expires when its creator asks for no expiry "
    f"(default {TOKEN_TTL_DAYS.default * SECONDS_PER_DAY:.0f}).",
)
API_TOKEN_MAX_TTL = EnvVar(
    "MLOPS_API_TOKEN_MAX_TTL",
    f"Longest expiry (seconds) a new token may ask for (default {TOKEN_MAX_TTL_DAYS.default * SECONDS_PER_DAY:.0f}).",
)
API_RATE_LIMIT_PER_SECOND = EnvVar(
    "MLOPS_API_RATE_LIMIT_PER_SECOND",
    f"Requests per second each token may make to one replica (default {RATE_LIMIT_PER_SECOND.default:g}).",
)
API_RATE_LIMIT_BURST = EnvVar(
    "MLOPS_API_RATE_LIMIT_BURST",
    f"Requests a token may make at once above that rate (default {RATE_LIMIT_BURST.default:g}).",
)
API_PORT = 8080

# --- credentials as files (see the module's docstring) ---------------------------------------------------
# Where the components mount each credential Secret: SECRETS_ROOT/<secret name>/<key>.
SECRETS_ROOT = "/var/run/secrets/mlops"
# MLflow's client credentials file, relative to $HOME (the MLflow client's own: mlflow.utils.credentials), its
# key in MLFLOW_CREDENTIALS_SECRET and its section and keys.
MLFLOW_CREDENTIALS_DIR = ".mlflow"
MLFLOW_CREDENTIALS_KEY = "credentials"
MLFLOW_CREDENTIALS_SECTION = "mlflow"
# boto's own variable: the AWS shared credentials file (INI, profile [default]) of a pod that needs S3 keys.
AWS_SHARED_CREDENTIALS_FILE = EnvVar(
    "AWS_SHARED_CREDENTIALS_FILE", "AWS shared credentials file (boto's own variable) of a pod that needs S3 keys."
)
AWS_CREDENTIALS_KEY = "credentials"


def secret_file(secret: str, key: str) -> str:
    """Path of one key of a credential Secret mounted the platform's way (SECRETS_ROOT/<secret>/<key>)."""
    return f"{SECRETS_ROOT}/{secret}/{key}"


def mlflow_credentials_file(home: str | None = None) -> Path:
    """MLflow's client credentials file under `home` ($HOME when None)."""
    return Path(home or Path.home()) / MLFLOW_CREDENTIALS_DIR / MLFLOW_CREDENTIALS_KEY


def mlflow_credentials_ini(username: str, password: str) -> str:
    """The content of MLflow's client credentials file for one user."""
    section = MLFLOW_CREDENTIALS_SECTION
    user_key, password_key = MLFLOW_TRACKING_USERNAME.name.lower(), MLFLOW_TRACKING_PASSWORD.name.lower()
    return f"[{section}]\n{user_key} = {username}\n{password_key} = {password}\n"


def aws_credentials_ini(access_key_id: str, secret_access_key: str) -> str:
    """The content of an AWS shared credentials file with one [default] profile."""
    return f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret_access_key}\n"


ENDPOINTS_CONFIGMAP = "mlops-endpoints"
RELOAD_TOKEN_SECRET = "mlops-serving-reload-token"
SLACK_SECRET = "mlops-slack-webhook"
MLFLOW_CREDENTIALS_SECRET = "mlops-mlflow-credentials"
# Key inside each of those Secrets: the variable name itself; pods mount them as files (`secret_file`) and read
# them through `<NAME>_FILE`. MLFLOW_CREDENTIALS_SECRET also holds MLflow's credentials file (MLFLOW_CREDENTIALS_KEY).

CONFIGMAP_VARS: tuple[EnvVar, ...] = (
    MLFLOW_TRACKING_URI,
    MLFLOW_EXTERNAL_URL,
    AIRFLOW_URL,
    ARTIFACT_BUCKET,
    MLFLOW_ARTIFACT_PREFIX,
    AIRFLOW_LOG_PREFIX,
    DATABASE_HOST,
    MLFLOW_NAMESPACE,
    AIRFLOW_NAMESPACE,
    SERVING_NAMESPACE,
    MLFLOW_PROXY_MULTIPART_DOWNLOAD,
)
SECRET_VARS: tuple[EnvVar, ...] = (RELOAD_TOKEN, SLACK_WEBHOOK_URL)
# the keys of MLFLOW_CREDENTIALS_SECRET (both set, or the Secret is empty)
MLFLOW_CLIENT_VARS: tuple[EnvVar, ...] = (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD)
SERVING_VARS: tuple[EnvVar, ...] = (
    MODEL_NAME,
    SERVING_ROUTING,
    SERVING_ALIASES,
    SERVING_POLL_SECONDS,
    SERVING_LOG_DIR,
    SERVING_MAX_BATCH,
    SERVING_WORKERS,
    SERVING_PORT_VAR,
    SERVING_GRPC_PORT_VAR,
    SERVING_HOST,
    SERVING_AUTH,
    SERVING_API_KEYS_FILE,
    SERVING_MAX_IN_FLIGHT,
    SERVING_PUBLIC_DOCS,
    SERVING_SHADOW_AGREEMENT,
)
# the S3 variables: the endpoint, CA and region (ConfigMap-safe) and a consumer's key (from its Secret)
OBJECT_STORE_VARS: tuple[EnvVar, ...] = (MLFLOW_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_CA_BUNDLE, AWS_DEFAULT_REGION)
S3_KEY_VARS: tuple[EnvVar, ...] = (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
MLFLOW_PROXY_VARS: tuple[EnvVar, ...] = (MLFLOW_PROXY_MULTIPART_DOWNLOAD,)
DEMO_VARS: tuple[EnvVar, ...] = (DEMO_BACKEND_STORE_URI, DEMO_ARTIFACTS_DESTINATION)
API_VARS: tuple[EnvVar, ...] = (
    API_DATABASE_PORT,
    API_DATABASE_NAME,
    API_DATABASE_USER,
    API_DATABASE_PASSWORD,
    API_DATABASE_SSLMODE,
    API_DATABASE_SSLROOTCERT,
    API_ADMIN_TOKEN,
    API_AIRFLOW_URL,
    API_AIRFLOW_USERNAME,
    API_AIRFLOW_PASSWORD,
    API_HOST,
    API_PORT_VAR,
    API_RECONCILE_SECONDS,
    API_EVENTS_POLL_SECONDS,
    API_ADMIN_TOKEN_PREVIOUS,
    API_TOKEN_TTL,
    API_TOKEN_MAX_TTL,
    API_RATE_LIMIT_PER_SECOND,
    API_RATE_LIMIT_BURST,
)
CATALOG_VARS: tuple[EnvVar, ...] = (MODEL_CATALOG,)
# what an S3-compatible store adds for its clients: the endpoint (MLflow's and boto3's names), the CA bundle, and the
# addressing style (MLflow's variable, boto3's config file)
S3_CLIENT_VARS: tuple[EnvVar, ...] = (
    MLFLOW_S3_ENDPOINT_URL,
    MLFLOW_S3_ADDRESSING_STYLE,
    AWS_ENDPOINT_URL_S3,
    AWS_CA_BUNDLE,
    AWS_CONFIG_FILE,
)
# the ones of S3_CLIENT_VARS that OBJECT_STORE_VARS does not hold
S3_CONFIG_VARS: tuple[EnvVar, ...] = (MLFLOW_S3_ADDRESSING_STYLE, AWS_CONFIG_FILE)
ALL_VARS: tuple[EnvVar, ...] = (
    CONFIGMAP_VARS
    + SECRET_VARS
    + MLFLOW_CLIENT_VARS
    + SERVING_VARS
    + CATALOG_VARS
    + DEMO_VARS
    + API_VARS
    + OBJECT_STORE_VARS
    + S3_KEY_VARS
    + S3_CONFIG_VARS
)

# Admin API path of the serving service, joined to a model's reload URL (CATALOG_RELOAD_URL_KEY) by its callers.
RELOAD_ALL_PATH = "/admin/reload"


def reload_path(alias: str) -> str:
    """Path of the reload endpoint of one alias."""
    return f"/variants/{alias}/reload"


def variant_predict_path(alias: str) -> str:
    """Path that predicts with one alias directly, whatever the routing (A/B, canary, blue-green)."""
    return f"/variants/{alias}/predict"


# The inference protocols every model deployment speaks besides its own /predict (the Ingress exposes them;
# services/serving/routes/open_inference.py and scoring.py serve them): the Open Inference Protocol (V2) REST
# paths, where `{model}` is the model's registered name, and MLflow's scoring protocol.
V2_SERVER_PATHS = ("/v2", "/v2/health/live", "/v2/health/ready")
V2_MODEL_PATH = "/v2/models/{model}"  # metadata; + /ready, /infer, /versions/{version}[/ready|/infer]
MLFLOW_SCORING_PATHS = ("/invocations", "/ping", "/health", "/version")


def v2_model_prefix(model: str) -> str:
    """The path under which every V2 endpoint of one model lies (an Ingress Prefix: whole segments only)."""
    return V2_MODEL_PATH.format(model=model)


def markdown_table() -> str:
    """The README's table of environment variables (a test keeps the README in sync)."""
    rows = ["| variable | from | description |", "| --- | --- | --- |"]
    for var in CONFIGMAP_VARS:
        rows.append(f"| `{var.name}` | ConfigMap `{ENDPOINTS_CONFIGMAP}` | {var.description} |")
    for var, secret in ((RELOAD_TOKEN, RELOAD_TOKEN_SECRET), (SLACK_WEBHOOK_URL, SLACK_SECRET)):
        rows.append(
            f"| `{var.file_variable}` (or `{var.name}` locally) | Secret `{secret}` mounted as a file "
            f"(`{secret_file(secret, var.name)}`) | {var.description} |"
        )
    mlflow_file = f"$HOME/{MLFLOW_CREDENTIALS_DIR}/{MLFLOW_CREDENTIALS_KEY}"
    for var in MLFLOW_CLIENT_VARS:
        rows.append(
            f"| `{var.name}` (locally) | Secret `{MLFLOW_CREDENTIALS_SECRET}` mounted as MLflow's own file "
            f"`{mlflow_file}` (key `{var.name.lower()}`) | {var.description} |"
        )
    for var in SERVING_VARS:
        rows.append(f"| `{var.name}` | serving pod env | {var.description} |")
    for var in CATALOG_VARS:
        rows.append(
            f"| `{var.name}` | Airflow pod env (ConfigMap `{MODEL_CATALOG_CONFIGMAP}` mounted) | {var.description} |"
        )
    for var in DEMO_VARS:
        rows.append(f"| `{var.name}` | `make demo` only | {var.description} |")
    for var in S3_CLIENT_VARS:
        rows.append(
            f"| `{var.name}` | pod env of the store's consumers (artifacts.mode s3Compatible) | {var.description} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
