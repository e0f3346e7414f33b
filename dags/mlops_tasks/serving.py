"""Client of the serving service's admin (reload) and prediction APIs."""

from __future__ import annotations

import logging
from typing import Any

from mlops_tasks.errors import PermanentError
from mlops_tasks.settings import Endpoints
from services.common.contract import reload_path

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
