"""MLflow's REST API as the API reads it: a training's run (found by its Airflow DAG-run tag), its metrics and
quality-gate tags, the version registered from it and that version's aliases; a model's versions and aliases.

Plain HTTP (httpx), no MLflow client library in the API's image. MLflow unreachable, timing out or answering 5xx
is `DependencyUnavailable("mlflow")`: 503 naming MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.api.errors import MLFLOW, DependencyUnavailable
from services.common.catalog import names
from services.common.registry_tags import GATE_REASON_TAG, GATE_TAG, TAG_DAG_RUN_ID

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class TrainingFacts:
    """What MLflow knows about one training (a DAG run)."""

    run_id: str | None = None
    status: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, str] | None = None
    registered_version: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelVersion:
    version: str
    status: str
    run_id: str | None
    aliases: tuple[str, ...]
    created_at: int | None


class MlflowClient:
    def __init__(
        self,
        tracking_uri: str,
        username: str | None = None,
        password: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        auth = httpx.BasicAuth(username, password) if username and password else None
        self.base_url = tracking_uri.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT, auth=auth, transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """The JSON answer; None for RESOURCE_DOES_NOT_EXIST (404)."""
        try:
            response = await self._http.request(method, f"/api/2.0/mlflow/{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(
                MLFLOW, f"{method} {self.base_url}/api/2.0/mlflow/{path} failed: {exc!r}"
            ) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DependencyUnavailable(
                MLFLOW, f"{method} {path} answered {response.status_code}: {response.text[:300]}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise DependencyUnavailable(MLFLOW, f"{method} {path} answered something that is not JSON") from exc
        return body if isinstance(body, dict) else {}

    async def health(self) -> bool:
        try:
            response = await self._http.get("/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def training_facts(self, model: str, dag_run_id: str) -> TrainingFacts:
        experiment = await self._call(
            "GET", "experiments/get-by-name", params={"experiment_name": names(model)["experiment"]}
        )
        if experiment is None:
            return TrainingFacts()
        search = await self._call(
            "POST",
            "runs/search",
            json={
                "experiment_ids": [experiment["experiment"]["experiment_id"]],
                "filter": f"tags.`{TAG_DAG_RUN_ID}` = '{_quoted(dag_run_id)}'",
                "max_results": 1,
                "order_by": ["attributes.start_time DESC"],
            },
        )
        runs = (search or {}).get("runs") or []
        if not runs:
            return TrainingFacts()
        run = runs[0]
        info, data = run.get("info", {}), run.get("data", {})
        run_id = str(info.get("run_id"))
        metrics = {str(m["key"]): float(m["value"]) for m in data.get("metrics", []) if "key" in m and "value" in m}
        tags = {str(t["key"]): str(t.get("value", "")) for t in data.get("tags", []) if "key" in t}
        gate = None
        if GATE_TAG in tags:
            gate = {"decision": tags[GATE_TAG], "reason": tags.get(GATE_REASON_TAG, "")}
        version = await self._version_of_run(model, run_id)
        return TrainingFacts(
            run_id=run_id,
            status=info.get("status"),
            metrics=metrics,
            gate=gate,
            registered_version=version.version if version else None,
            aliases=version.aliases if version else (),
        )

    async def _version_of_run(self, model: str, run_id: str) -> ModelVersion | None:
        found = await self.versions(model, f"run_id = '{_quoted(run_id)}'")
        return found[0] if found else None

    async def versions(self, model: str, extra_filter: str | None = None) -> list[ModelVersion]:
        """The model's versions (newest first), with their aliases; [] when the model is not registered."""
        where = f"name = '{_quoted(model)}'" + (f" AND {extra_filter}" if extra_filter else "")
        body = await self._call(
            "GET",
            "model-versions/search",
            params={"filter": where, "max_results": 100, "order_by": "version_number DESC"},
        )
        versions = [_version(v) for v in (body or {}).get("model_versions", [])]
        if not versions:
            return []
        aliases = await self.aliases(model)
        return [
            ModelVersion(
                v.version, v.status, v.run_id, tuple(a for a, ver in aliases.items() if ver == v.version), v.created_at
            )
            for v in versions
        ]

    async def model_tags(self, model: str) -> dict[str, str] | None:
        """The registered model's tags (None when it is not registered)."""
        body = await self._call("GET", "registered-models/get", params={"name": model})
        if body is None:
            return None
        entries = body.get("registered_model", {}).get("tags", []) or []
        return {str(t["key"]): str(t.get("value", "")) for t in entries if "key" in t}

    async def set_model_tag(self, model: str, key: str, value: str) -> bool:
        """Set a tag of the registered model; False when the model is not registered."""
        body = await self._call("POST", "registered-models/set-tag", json={"name": model, "key": key, "value": value})
        return body is not None

    async def delete_model_tag(self, model: str, key: str) -> None:
        """Delete a tag of the registered model (nothing when the model or the tag does not exist)."""
        await self._call("DELETE", "registered-models/delete-tag", json={"name": model, "key": key})

    async def aliases(self, model: str) -> dict[str, str]:
        """Alias -> version of a registered model ({} when it is not registered)."""
        body = await self._call("GET", "registered-models/get", params={"name": model})
        if body is None:
            return {}
        entries = body.get("registered_model", {}).get("aliases", [])
        return {str(a["alias"]): str(a["version"]) for a in entries if "alias" in a and "version" in a}


def _version(raw: Mapping[str, Any]) -> ModelVersion:
    created = raw.get("creation_timestamp")
    return ModelVersion(
        version=str(raw.get("version")),
        status=str(raw.get("status", "")),
        run_id=raw.get("run_id"),
        aliases=tuple(str(a) for a in raw.get("aliases", []) or []),
        created_at=int(created) if created is not None else None,
    )


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
