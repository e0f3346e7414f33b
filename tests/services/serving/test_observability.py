"""Shadow routing, Prometheus metrics and the structured JSON logs (stdout and the rotating file)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.serving.conftest import metric_value, predict, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_shadow_answers_with_primary_and_compares_the_challenger(
    new_model: Callable[..., Any], start_service: Callable[..., Any], tmp_path: Path
) -> None:
    model = new_model(champion=1.0, challenger=0.01)
    svc = start_service(
        model,
        aliases=("champion", "challenger"),
        log_dir=tmp_path / "logs",
        routing={"mode": "shadow", "primary": "champion", "shadow": "challenger"},
    )
    n = 30
    with httpx.Client(timeout=30) as client:
        answers = [predict(client, svc.base_url).json() for _ in range(n)]
    assert {(a["alias"], a["version"]) for a in answers} == {("champion", model.versions[0].version)}

    def compared() -> float:
        return sum(
            metric_value(svc.base_url, "serving_shadow_comparisons_total", outcome=o) for o in ("agree", "differ")
        )

    wait_until(lambda: compared() == n, 60, "every shadow comparison")
    [log_file] = (tmp_path / "logs").glob("serving-*.log")
    records = [r for r in json_lines(log_file) if r.get("event") == "shadow.compared"]
    assert len(records) == n
    assert {r["shadow_alias"] for r in records} == {"challenger"}
    assert {r["request_id"] for r in records} == {a["request_id"] for a in answers}


def test_metrics_and_json_logs_carry_alias_version_and_request_id(
    new_model: Callable[..., Any], start_service: Callable[..., Any], tmp_path: Path
) -> None:
    model = new_model(champion=1.0)
    version = model.versions[0].version
    svc = start_service(model, log_dir=tmp_path / "logs")
    with httpx.Client(timeout=30) as client:
        response = predict(client, svc.base_url, headers={"X-Request-Id": "req-test-0001"})
        assert response.headers["x-request-id"] == "req-test-0001"
        assert response.json()["request_id"] == "req-test-0001"
        for _ in range(4):
            assert predict(client, svc.base_url).status_code == 200
        assert predict(client, svc.base_url, rows=[{"bad": 1}]).status_code == 422
        metrics = client.get(f"{svc.base_url}/metrics")
    assert metrics.status_code == 200
    assert metric_value(svc.base_url, "serving_requests_total", alias="champion", version=version, status="200") == 5
    assert metric_value(svc.base_url, "serving_requests_total", alias="champion", version=version, status="422") == 1
    assert metric_value(svc.base_url, "serving_request_latency_seconds_count", alias="champion", version=version) == 5
    assert metric_value(svc.base_url, "serving_model_load_seconds_count", alias="champion") == 1
    assert metric_value(svc.base_url, "serving_model_version", alias="champion") == float(version)
    assert "serving_reload_failures_total" in metrics.text or "serving_reload_failures" in metrics.text

    [log_file] = (tmp_path / "logs").glob("serving-*.log")
    file_records = json_lines(log_file)
    mine = [r for r in file_records if r.get("request_id") == "req-test-0001"]
    assert mine and mine[-1]["path"] == "/predict" and mine[-1]["status"] == 200
    assert (mine[-1]["alias"], mine[-1]["version"]) == ("champion", version)
    assert all({"ts", "level", "logger", "msg", "instance"} <= set(r) for r in file_records)
    # the same JSON lines go to stdout
    stdout_records = [
        json.loads(line) for line in svc.process.log_tail(10_000_000).splitlines() if line.startswith("{")
    ]
    assert any(r.get("request_id") == "req-test-0001" for r in stdout_records)
