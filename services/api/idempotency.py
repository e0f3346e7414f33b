"""Idempotency of `POST /v1/trainings` and `POST /v1/models/{model}/rollback`. Pure functions.

Every such request carries an `Idempotency-Key` header. Keys belong to the caller (the token): the same key
from the same caller names the same run. The run's id is derived from (caller, key), and so is the Airflow
DAG-run id, so even a request whose answer was lost, retried after the API restarted, can only ever start one
DAG run (Airflow refuses a second run with the same id). The request's fingerprint (kind, model and body in
canonical JSON) is stored: the same key with a different request is refused (409) instead of answered with a
run that is not what was asked.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

HEADER = "Idempotency-Key"
MAX_KEY = 200
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII, no spaces
_NAMESPACE = uuid.UUID("6f1c2d1e-4a8b-5c3d-9e7f-0a1b2c3d4e5f")
DAG_RUN_PREFIX = "api__"


def key_problem(key: str) -> str | None:
    """Why `key` is not a usable Idempotency-Key, or None."""
    if not _KEY.match(key):
        return f"must be 1 to {MAX_KEY} visible ASCII characters without spaces (e.g. a UUID)"
    return None


def run_id(principal: str, key: str) -> uuid.UUID:
    """The run's id for this caller and key: the same pair always gives the same id."""
    return uuid.uuid5(_NAMESPACE, json.dumps([principal, key]))


def dag_run_id(run: uuid.UUID) -> str:
    """The Airflow DAG-run id of a run (deterministic, so a retried trigger cannot start a second run)."""
    return f"{DAG_RUN_PREFIX}{run}"


def fingerprint(kind: str, model: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "model": model, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
