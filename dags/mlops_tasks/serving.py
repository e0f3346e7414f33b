"""Client of the serving service's admin (reload) and prediction APIs."""

from __future__ import annotations

import logging
import time
from typing import Any

from mlops_tasks.endpoints import Endpoints
from mlops_tasks.errors import PermanentError
from services.common.contract import reload_path, variant_predict_path

log = logging.getLogger(__name__)

# 4xx answers that retrying can fix.
_TRANSIENT_4XX = {408, 425, 429}


class ServingUnavailable(Exception):
    """Serving did not answer or answered 5xx: retryable."""


def _raise_for(response: Any, what: str) -> None:
    status = int(response.status_code)
    if status < 400:
        return
    detail = response.text[:300]
    if status < 500 and status not in _TRANSIENT_4XX:
        raise PermanentError(f"serving refused {what}: HTTP {status} {detail}")
    raise ServingUnavailable(f"serving failed {what}: HTTP {status} {detail}")


def reload(endpoints: Endpoints, alias: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Ask serving to load what `alias` points at now. Returns serving's answer."""
    import httpx

    url = f"{endpoints.reload_url}{reload_path(alias)}"
    headers = {"Authorization": f"Bearer {endpoints.reload_token}"} if endpoints.reload_token else {}
    try:
        response = httpx.post(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ServingUnavailable(f"reload of {alias} at {url}: {type(exc).__name__}: {exc}") from exc
    _raise_for(response, f"the reload of {alias}")
    body: dict[str, Any] = response.json()
    log.info("serving reloaded %s: %s", alias, body)
    return body


def predict_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Request body of `POST /predict`."""
    return {"rows": rows}


def predict(
    serving_url: str,
    rows: list[dict[str, Any]],
    timeout_s: float = 30.0,
    alias: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """One prediction request; returns serving's JSON answer (it names the alias and version used).

    Without `alias` the request is routed like any client's (`POST /predict`); with it, it goes to
    that variant directly (`POST /variants/{alias}/predict`). `token` (the pipelines' admin token) is sent as
    the bearer credential, so verification also works where the model's serving requires authentication.
    """
    import httpx

    path = "/predict" if alias is None else variant_predict_path(alias)
    url = f"{serving_url.rstrip('/')}{path}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(url, json=predict_body(rows), headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ServingUnavailable(f"predict at {url}: {type(exc).__name__}: {exc}") from exc
    _raise_for(response, "a prediction")
    body: dict[str, Any] = response.json()
    return body


def served_version(answer: dict[str, Any]) -> tuple[str | None, str | None]:
    """(alias, version) named by a prediction answer."""
    alias = answer.get("alias")
    version = answer.get("version")
    return (None if alias is None else str(alias)), (None if version is None else str(version))


def wait_until_served(
    endpoints: Endpoints,
    alias: str,
    version: str,
    rows: list[dict[str, Any]],
    timeout_s: float,
    interval_s: float = 1.0,
    consecutive: int = 3,
) -> dict[str, Any]:
    """Poll `POST /variants/{alias}/predict` until `consecutive` answers in a row come from `alias`
    at `version`.

    The variant's own endpoint, because the routed `/predict` may send most requests to another
    alias (canary, A/B, blue-green) and would then never, or only by chance, show the promoted one.
    Several consecutive answers, because serving may run several workers or replicas that pick the
    new version up one after the other. Raises PermanentError when the deadline passes.
    """
    deadline = time.monotonic() + timeout_s
    streak = 0
    last: dict[str, Any] | str = "no answer"
    while True:
        try:
            answer = predict(endpoints.serving_url, rows, alias=alias, token=endpoints.reload_token)
            last = answer
            if served_version(answer) == (alias, version):
                streak += 1
                if streak >= consecutive:
                    log.info("serving answers with %s version %s: %s", alias, version, answer)
                    return answer
            else:
                streak = 0
        except (ServingUnavailable, PermanentError) as exc:
            streak = 0
            last = str(exc)
        if time.monotonic() >= deadline:
            raise PermanentError(
                f"serving did not answer with {alias} version {version} within {timeout_s:.0f} s; last answer: {last}"
            )
        time.sleep(interval_s)
