"""A real Alertmanager (Debian's 0.25) with the generated configuration and Slack templates delivers a firing alert
of the platform's rules to a local HTTP receiver standing in for Slack, in Slack's message format, with a title and
text a person can read (summary, description, runbook, labels; no template left unrendered). Without a webhook the
same configuration keeps the alert in Alertmanager and nothing fails. `amtool` accepts both configurations."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.procs import free_port, http_server
from observability import alertmanager, rules
from tests.observability.conftest import SERVING_NS, render

pytestmark = [pytest.mark.servers]


class Receiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def wait(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.received:
                    return self.received[0]
            time.sleep(0.2)
        raise AssertionError("the receiver got no message from Alertmanager")


@pytest.fixture
def slack() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield receiver, f"http://127.0.0.1:{port}/services/T000/B000/XXXX"
    finally:
        server.shutdown()
        server.server_close()


def _write_config(folder: Path, webhook_url: str | None) -> Path:
    templates = folder / "templates"
    templates.mkdir()
    (templates / alertmanager.TEMPLATE_FILE).write_text(alertmanager.SLACK_TEMPLATE)
    url_file = None
    if webhook_url is not None:
        secret = folder / "secrets"
        secret.mkdir()
        (secret / "webhook-url").write_text(webhook_url)
        url_file = str(secret / "webhook-url")
    config = alertmanager.alertmanager_config(
        slack_url_file=url_file, templates_dir=str(templates), group_wait="1s", group_interval="5s"
    )
    path = folder / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _run_alertmanager(binary: str, config: Path, folder: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return http_server("alertmanager", argv, port=port, ready_path="/-/ready", log_path=folder / "am.log"), port


def _firing_alert(rule_settings: rules.RuleSettings) -> dict[str, Any]:
    """ServingErrorRatioHigh as Prometheus sends it: labels of the rule and the series, rendered annotations."""
    rule = next(r for r in rules.alert_rules(rule_settings) if r.name == "ServingErrorRatioHigh").rule()
    labels = {
        "alertname": "ServingErrorRatioHigh",
        **rule["labels"],
        "namespace": SERVING_NS,
        "model": "iris-classifier",
        "alias": "champion",
        "stack": "dev",
    }
    annotations = {k: render(v, labels) for k, v in rule["annotations"].items()}
    return {"labels": labels, "annotations": annotations, "startsAt": datetime.now(UTC).isoformat()}


def test_amtool_accepts_both_configurations(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool is part of Debian's prometheus-alertmanager package"
    for name, url in (("with", "https://hooks.example.invalid/x"), ("without", None)):
        folder = tmp_path / name
        folder.mkdir()
        config = _write_config(folder, url)
        done = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{2 if url else 1} receivers" in done.stdout


def test_a_firing_alert_reaches_slack_readable(
    alertmanager_binary: str, slack: tuple[Receiver, str], tmp_path: Path, rule_settings: rules.RuleSettings
) -> None:
    receiver, url = slack
    server, port = _run_alertmanager(alertmanager_binary, _write_config(tmp_path, url), tmp_path)
    alert = _firing_alert(rule_settings)
    with server:
        posted = httpx.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=[alert], timeout=10)
        assert posted.status_code == 200, posted.text
        message = receiver.wait()
    attachment = message["attachments"][0]
    assert attachment["title"] == "[FIRING:1] ServingErrorRatioHigh · dev"
    assert attachment["color"] == "danger"  # critical
    text = attachment["text"]
    assert text.startswith(f"*{alert['annotations']['summary']}*\n")
    assert alert["annotations"]["description"] in text
    assert f"*Runbook:* {alert['annotations']['runbook']}" in text
    assert "*Severity:* critical" in text
    assert "`model=iris-classifier`" in text and "`alias=champion`" in text
    assert "{{" not in json.dumps(message) and "<no value>" not in json.dumps(message)


def test_without_a_webhook_alerts_stay_in_alertmanager(
    alertmanager_binary: str, tmp_path: Path, rule_settings: rules.RuleSettings
) -> None:
    server, port = _run_alertmanager(alertmanager_binary, _write_config(tmp_path, None), tmp_path)
    with server:
        posted = httpx.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=[_firing_alert(rule_settings)], timeout=10)
        assert posted.status_code == 200
        listed = httpx.get(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=10).json()
    assert [a["labels"]["alertname"] for a in listed] == ["ServingErrorRatioHigh"]
    assert [r["name"] for r in listed[0]["receivers"]] == [alertmanager.NULL_RECEIVER]
