"""Hot swap: reload auth, zero failed requests while versions change, a broken version keeps the old
one serving (with an alert), rollback alerts, coalesced concurrent reloads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from devstack.stack import MlflowStack
from services.common import contract
from tests.services.serving.conftest import Webhook, metric_value, predict, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reload_requires_the_token(new_model: Callable[..., Any], start_service: Callable[..., Any]) -> None:
    model = new_model(champion=1.0)
    svc = start_service(model, reload_token="the-right-token")
    paths = [contract.reload_path("champion"), contract.RELOAD_ALL_PATH]
    with httpx.Client(base_url=svc.base_url, timeout=60) as client:
        for path in paths:
            missing = client.post(path)
            assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
            assert client.post(path, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
            assert client.post(path, headers=bearer("the-wrong-token")).status_code == 403
            assert client.post(path, headers=bearer("the-right-token" + "x")).status_code == 403
            assert client.post(path, headers=bearer("the-right-toke")).status_code == 403
        ok = client.post(paths[0], headers=bearer("the-right-token"))
        assert ok.status_code == 200 and ok.json()["outcome"] == "unchanged"
        assert client.post(paths[1], headers=bearer("the-right-token")).json()["ok"] is True
        assert client.post(contract.reload_path("nope"), headers=bearer("the-right-token")).status_code == 404


class Traffic:
    """Client threads sending predictions until stopped; records every status and version seen."""

    def __init__(self, base: str, threads: int = 4) -> None:
        self.base = base
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.versions_per_thread: list[list[int]] = [[] for _ in range(threads)]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = predict(client, self.base)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))
                    continue
                with self.lock:
                    self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.versions_per_thread[index].append(int(response.json()["version"]))

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_hot_swap_under_load_has_no_failed_request(
    new_model: Callable[..., Any], start_service: Callable[..., Any]
) -> None:
    model = new_model(champion=1.0)
    svc = start_service(model, poll_seconds=3600)  # only the explicit reloads swap
    with Traffic(svc.base_url) as traffic, httpx.Client(timeout=120) as admin:
        for c in (0.5, 0.2, 0.1):
            new = model.add(alias="champion", C=c)
            response = admin.post(f"{svc.base_url}{contract.reload_path('champion')}", headers=bearer(svc.reload_token))
            assert response.status_code == 200, response.text
            assert response.json()["outcome"] == "reloaded" and response.json()["version"] == new.version
            # the very next request after the answer is served by the new version
            assert predict(admin, svc.base_url).json()["version"] == new.version
    assert traffic.errors == []
    assert traffic.statuses and set(traffic.statuses) == {200}, set(traffic.statuses)
    for seen in traffic.versions_per_thread:
        assert seen == sorted(seen), "a client saw an older version after a newer one"
    assert len({v for seen in traffic.versions_per_thread for v in seen}) >= 2  # traffic spanned swaps
    assert metric_value(svc.base_url, "serving_reloads_total", alias="champion", outcome="reloaded", trigger="api") == 3


def corrupt_artifact(stack: MlflowStack, source: str) -> str:
    """Overwrite the serialized model of a logged model (source models:/m-...) in moto's S3."""
    model_id = source.rsplit("/", 1)[-1]
    s3 = stack.s3.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", []) if model_id in o["Key"]]
    targets = [k for k in keys if k.endswith(("model.skops", "model.pkl"))]
    assert targets, f"no serialized model found for {model_id} among {keys}"
    for key in targets:
        s3.put_object(Bucket="mlflow", Key=key, Body=b"this is not a model")
    return targets[0]


def test_broken_version_keeps_the_old_one_and_alerts(
    stack: MlflowStack, webhook: Webhook, new_model: Callable[..., Any], start_service: Callable[..., Any]
) -> None:
    model = new_model(champion=1.0)
    good = model.versions[0].version
    svc = start_service(model, slack_webhook_url=webhook.url, poll_seconds=3600)
    broken = model.add(C=0.3)
    corrupt_artifact(stack, broken.source)
    model.point("champion", broken.version)
    url = f"{svc.base_url}{contract.reload_path('champion')}"
    with Traffic(svc.base_url, threads=2) as traffic, httpx.Client(timeout=120) as admin:
        response = admin.post(url, headers=bearer(svc.reload_token))
        assert response.status_code == 502, response.text
        body = response.json()
        assert body["outcome"] == "failed"
        assert (body["version"], body["attempted_version"]) == (good, broken.version)
        assert body["reason"]
        assert predict(admin, svc.base_url).json()["version"] == good
        assert admin.get(f"{svc.base_url}/readyz").status_code == 200
    assert traffic.errors == [] and set(traffic.statuses) == {200}
    webhook.wait_for("serving.reload_failed", attempted_version=broken.version, kept_version=good, alias="champion")
    assert metric_value(svc.base_url, "serving_reload_failures_total", alias="champion") == 1

    # a good version afterwards is taken, and moving the alias back to an older one is a rollback
    fixed = model.add(alias="champion", C=0.2)
    with httpx.Client(timeout=120) as admin:
        assert admin.post(url, headers=bearer(svc.reload_token)).json()["version"] == fixed.version
        webhook.wait_for("serving.model_reloaded", version=fixed.version, alias="champion")
        model.point("champion", good)
        rolled = admin.post(url, headers=bearer(svc.reload_token)).json()
        assert (rolled["outcome"], rolled["version"], rolled["previous_version"]) == ("reloaded", good, fixed.version)
    webhook.wait_for("serving.model_rolled_back", version=good, previous_version=fixed.version)


def test_concurrent_reloads_coalesce(new_model: Callable[..., Any], start_service: Callable[..., Any]) -> None:
    model = new_model(champion=1.0)
    svc = start_service(model, poll_seconds=3600)
    new = model.add(alias="champion", C=0.4)
    url = f"{svc.base_url}{contract.reload_path('champion')}"

    start = threading.Barrier(8)

    def call(_: int) -> httpx.Response:
        # each caller's connection is open before they all send at once: the calls arrive within the first load
        with httpx.Client(timeout=120) as client:
            client.get(f"{svc.base_url}/healthz")
            start.wait(30)
            return client.post(url, headers=bearer(svc.reload_token))

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert {r.json()["version"] for r in responses} == {new.version}
    runs = sum(
        metric_value(svc.base_url, "serving_reloads_total", alias="champion", outcome=o, trigger="api")
        for o in ("reloaded", "unchanged", "failed")
    )
    # one load for the calls that arrived first, at most one more for those arriving during it
    assert 1 <= runs <= 2, runs
    assert metric_value(svc.base_url, "serving_reloads_total", alias="champion", outcome="reloaded", trigger="api") == 1


def test_alerts_without_a_webhook_are_skipped_not_errors(
    new_model: Callable[..., Any], start_service: Callable[..., Any]
) -> None:
    model = new_model(champion=1.0)
    svc = start_service(model, poll_seconds=3600)
    model.add(alias="champion", C=0.3)
    response = httpx.post(
        f"{svc.base_url}{contract.reload_path('champion')}", headers=bearer(svc.reload_token), timeout=120
    )
    assert response.status_code == 200 and response.json()["outcome"] == "reloaded"
    wait_until(
        lambda: "no webhook configured, not sent" in svc.process.log_tail(400_000), 30, "the skipped alert to be logged"
    )
    assert '"level":"error"' not in svc.process.log_tail(400_000)
