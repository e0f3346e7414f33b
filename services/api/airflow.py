"""Airflow's REST API (v2, Airflow 3) as the API uses it: trigger, read and fail DAG runs.

The API logs in as its Airflow user (`POST /auth/token`, the simple and the FAB auth managers alike) and keeps
the JWT until Airflow refuses it. Airflow unreachable, timing out or answering 5xx is `DependencyUnavailable`
("airflow"): the API answers 503 naming Airflow, never 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from services.api.errors import AIRFLOW, ApiError, DependencyUnavailable

log = logging.getLogger("mlops.api.airflow")

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class DagRun:
    dag_id: str
    dag_run_id: str
    state: str | None
    start_date: str | None
    end_date: str | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DagRun:
        return cls(
            dag_id=str(body.get("dag_id")),
            dag_run_id=str(body.get("dag_run_id")),
            state=body.get("state"),
            start_date=body.get("start_date"),
            end_date=body.get("end_date"),
        )


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT, transport=transport)
        self._token: str | None = None
        self._login = asyncio.Lock()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(AIRFLOW, f"{method} {self.base_url}{path} failed: {exc!r}") from exc

    async def _token_value(self, refresh: bool = False) -> str:
        async with self._login:
            if self._token is None or refresh:
                response = await self._send("POST", "/auth/token", json=self._credentials)
                if response.status_code not in (200, 201):
                    raise DependencyUnavailable(
                        AIRFLOW, f"login as {self._credentials['username']!r} refused ({response.status_code})"
                    )
                try:
                    self._token = str(response.json()["access_token"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise DependencyUnavailable(AIRFLOW, "login answer without access_token") from exc
            return self._token

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated call; a 401 logs in again once. 5xx is DependencyUnavailable."""
        token = await self._token_value()
        response = await self._send(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        if response.status_code == 401:
            token = await self._token_value(refresh=True)
            response = await self._send(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        if response.status_code >= 500:
            raise DependencyUnavailable(AIRFLOW, f"{method} {path} answered {response.status_code}")
        if response.status_code in (401, 403):
            raise DependencyUnavailable(
                AIRFLOW, f"{method} {path} refused ({response.status_code}): the API's Airflow user lacks permission"
            )
        return response

    async def health(self) -> bool:
        try:
            response = await self._http.get("/api/v2/monitor/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def check_dag(self, dag_id: str) -> None:
        """The DAG exists and is not paused, else 503 (missing: Airflow is not serving the catalog's DAGs) or
        409 (paused: an operator stopped it)."""
        response = await self.request("GET", f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            raise DependencyUnavailable(
                AIRFLOW, f"Airflow has no DAG {dag_id!r} (is the DAG processor running on the current catalog?)"
            )
        _expect(response, "GET", dag_id)
        if response.json().get("is_paused"):
            raise ApiError(409, f"the DAG {dag_id} is paused in Airflow: unpause it to run it", "model")

    async def trigger(self, dag_id: str, dag_run_id: str, conf: Mapping[str, Any]) -> DagRun:
        """Start the DAG run `dag_run_id` (an existing run of that id is returned as it is: a retry)."""
        body = {"dag_run_id": dag_run_id, "logical_date": None, "conf": dict(conf)}
        response = await self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code == 409:
            log.info("DAG run %s of %s exists already: taken as triggered", dag_run_id, dag_id)
            existing = await self.get_run(dag_id, dag_run_id)
            if existing is None:
                raise DependencyUnavailable(
                    AIRFLOW, f"run {dag_run_id} of {dag_id} is said to exist but cannot be read"
                )
            return existing
        if response.status_code == 404:
            raise DependencyUnavailable(AIRFLOW, f"Airflow has no DAG {dag_id!r}")
        if response.status_code in (400, 422):  # the DAG's params refused the conf
            raise ApiError(422, f"Airflow refused the run's conf for {dag_id}: {response.text[:500]}", "params")
        _expect(response, "POST", dag_id)
        return DagRun.from_json(response.json())

    async def get_run(self, dag_id: str, dag_run_id: str) -> DagRun | None:
        response = await self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}")
        if response.status_code == 404:
            return None
        _expect(response, "GET", dag_id)
        return DagRun.from_json(response.json())

    async def fail_run(self, dag_id: str, dag_run_id: str) -> DagRun | None:
        """Mark the DAG run failed (Airflow stops its unfinished tasks); None when the run does not exist."""
        response = await self.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", json={"state": "failed"})
        if response.status_code == 404:
            return None
        _expect(response, "PATCH", dag_id)
        return DagRun.from_json(response.json())

    async def failed_tasks(self, dag_id: str, dag_run_id: str) -> list[str]:
        """Ids of the failed task instances of a DAG run (for the run's error message)."""
        response = await self.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", params={"state": "failed"}
        )
        if response.status_code != 200:
            return []
        items = response.json().get("task_instances", [])
        return sorted({str(ti.get("task_id")) for ti in items if ti.get("state") == "failed"})


def _expect(response: httpx.Response, method: str, dag_id: str) -> None:
    if not 200 <= response.status_code < 300:
        raise DependencyUnavailable(
            AIRFLOW, f"{method} on DAG {dag_id} answered {response.status_code}: {response.text[:300]}"
        )
