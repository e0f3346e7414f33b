"""Failures that retrying cannot fix: the task fails at once (no retries), and the rest of the DAG
(rollback, failure callbacks) takes over."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class PermanentError(AirflowFailException):
    """A wrong state or a refusal; retrying would give the same answer."""
