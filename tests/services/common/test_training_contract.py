"""The training contract: its variables are distinct, reuse the endpoints contract's names where they mean the
same thing, the page docs/models.md shows the current table, and the platform's own secrets and settings never
pass through to model code while the MLflow credentials, cloud credentials and system basics do."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common import contract
from services.common import training_contract as tc

DOC = Path(__file__).resolve().parents[3] / "docs" / "models.md"


def test_variables_are_distinct_and_shared_names_come_from_the_endpoints_contract() -> None:
    names = [var.name for var in tc.TRAINING_VARS + tc.CREDENTIAL_VARS]
    assert len(names) == len(set(names))
    assert tc.TRACKING_URI.name == contract.MLFLOW_TRACKING_URI.name
    assert tc.MODEL_NAME.name == contract.MODEL_NAME.name
    assert tc.CREDENTIAL_VARS == (contract.MLFLOW_TRACKING_USERNAME, contract.MLFLOW_TRACKING_PASSWORD)
    assert all(var.description.strip() for var in tc.TRAINING_VARS)


def test_docs_show_the_current_table() -> None:
    assert tc.markdown_table() in DOC.read_text(), "regenerate with: python -m services.common.training_contract"


def test_only_mlflow_credentials_and_the_s3_client_settings_of_the_endpoints_contract_pass_through() -> None:
    passing = {var.name for var in contract.ALL_VARS if tc.passes_through(var.name)}
    # the S3 clients' own variables (endpoint, CA bundle, config file, region, keys: training code reads s3://
    # datasets with boto3) and MLflow's proxied-download switch; MLflow's addressing style is the server's alone
    s3_client = {
        *contract.OBJECT_STORE_VARS,
        *contract.S3_KEY_VARS,
        *contract.MLFLOW_PROXY_VARS,
        *contract.S3_CLIENT_VARS,
    }
    s3_client.discard(contract.MLFLOW_S3_ADDRESSING_STYLE)
    assert passing == {var.name for var in (*contract.MLFLOW_CLIENT_VARS, *s3_client)}


@pytest.mark.parametrize(
    ("name", "passes"),
    [
        ("HOME", True),
        ("LC_ALL", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", True),
        ("MLFLOW_S3_ENDPOINT_URL", True),
        ("CUDA_VISIBLE_DEVICES", True),
        ("AIRFLOW__CORE__FERNET_KEY", False),
        ("AIRFLOW_CONN_AWS_DEFAULT", False),
        ("PYTHONPATH", False),  # the runner sets its own
        ("PATH", False),  # likewise
        (tc.RUN_ID.name, False),  # set by the runner for each run, never inherited
    ],
)
def test_pass_through(name: str, passes: bool) -> None:
    assert tc.passes_through(name) is passes
