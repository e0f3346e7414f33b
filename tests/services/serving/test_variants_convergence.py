"""Every process converges through the registry watcher: a reload pushed to one process, and a
blue-green switch made through one process's admin API, reach the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.common import contract
from services.serving.routes.admin import ACTIVE_PATH
from tests.services.serving.conftest import loaded_versions, predict, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_push_to_one_process_reaches_the_other_through_the_watcher(
    new_model: Callable[..., Any], start_service: Callable[..., Any]
) -> None:
    model = new_model(champion=1.0)
    first = model.versions[0].version
    a = start_service(model, poll_seconds=3600)  # A only changes when pushed
    b = start_service(model, poll_seconds=1, workers=2)  # B (two workers) only through its watchers
    assert loaded_versions(a.base_url) == loaded_versions(b.base_url) == {"champion": first}
    new = model.add(alias="champion", C=0.3)
    with httpx.Client(timeout=60) as client:
        pushed = client.post(
            f"{a.base_url}{contract.reload_path('champion')}", headers={"Authorization": f"Bearer {a.reload_token}"}
        )
        assert pushed.json()["version"] == new.version
        assert predict(client, a.base_url).json()["version"] == new.version

        def b_converged() -> bool:
            # new connections, so both of B's workers are asked
            return all(
                predict(httpx.Client(timeout=30), b.base_url).json()["version"] == new.version for _ in range(20)
            )

        wait_until(b_converged, 120, "process B to serve the new version")
    assert "watcher" in b.process.log_tail(400_000)


def test_blue_green_switch_through_one_process_reaches_the_other(
    new_model: Callable[..., Any], start_service: Callable[..., Any]
) -> None:
    model = new_model(blue=1.0, green=0.2)
    routing = {"mode": "blue-green", "active": "blue", "standby": "green"}
    a = start_service(model, aliases=("blue", "green"), routing=routing, poll_seconds=1)
    b = start_service(model, aliases=("blue", "green"), routing=routing, poll_seconds=1)
    with httpx.Client(timeout=60) as client:
        for svc in (a, b):
            assert {predict(client, svc.base_url).json()["alias"] for _ in range(20)} == {"blue"}
        auth = {"Authorization": f"Bearer {a.reload_token}"}
        assert client.post(f"{a.base_url}{ACTIVE_PATH}", json={"alias": "green"}).status_code == 401
        assert client.post(f"{a.base_url}{ACTIVE_PATH}", json={"alias": "purple"}, headers=auth).status_code == 422
        switched = client.post(f"{a.base_url}{ACTIVE_PATH}", json={"alias": "green"}, headers=auth)
        assert switched.status_code == 200 and switched.json() == {"active": "green"}
        # A switched at once, without a restart; B follows through the registry
        assert {predict(client, a.base_url).json()["alias"] for _ in range(20)} == {"green"}
        wait_until(lambda: client.get(f"{b.base_url}/models").json()["active"] == "green", 120, "B to switch")
        answers = [predict(client, b.base_url).json() for _ in range(20)]
        assert {(x["alias"], x["version"]) for x in answers} == {("green", model.versions[1].version)}
        # and back
        assert (
            client.post(
                f"{b.base_url}{ACTIVE_PATH}",
                json={"alias": "blue"},
                headers={"Authorization": f"Bearer {b.reload_token}"},
            ).status_code
            == 200
        )
        wait_until(lambda: client.get(f"{a.base_url}/models").json()["active"] == "blue", 120, "A to switch back")
