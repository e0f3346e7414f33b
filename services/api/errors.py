"""The API's errors. Every error answer has one shape: `{"detail", "field"}` (plus `dependency` for a 503).

- `ApiError(status, detail, field)`: a client error (4xx) naming the field, or a conflict.
- `DependencyUnavailable(dependency, detail)`: Airflow, MLflow or the database cannot be reached or answered
  unusably; the answer is 503 naming the dependency, never a 500.
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(
        self, status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})


class DependencyUnavailable(Exception):
    """`dependency` is one of DEPENDENCIES."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} is unavailable: {detail}")
        self.dependency = dependency
        self.detail = f"{dependency} is unavailable: {detail}"


AIRFLOW, MLFLOW, DATABASE = "airflow", "mlflow", "database"
DEPENDENCIES = (AIRFLOW, MLFLOW, DATABASE)
