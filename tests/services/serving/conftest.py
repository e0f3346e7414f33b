"""Fixtures of the serving tests: real servers on free loopback ports.

- `mlflow_stack` (session): a fresh PostgreSQL database as MLflow's backend store, moto's S3 server as
  the proxied artifact store, and `mlflow server`, started once (cold start ~20 s).
- `webhook` (session): a local HTTP receiver standing in for Slack; records every alert posted.
- `new_model`: registers real iris LogisticRegression versions under a model name of the test's own
  (so tests moving aliases never disturb each other).
- `start_service`: the serving service as a subprocess, run with the Dockerfile's command.
- `env` and `call`, for the in-process tests: the contract's variables cleared but for a tracking URI nobody
  answers on and a model name; one request to an application in this process (no lifespan, no server).

Fixtures that need PostgreSQL, moto or MLflow FAIL (never skip) when those cannot start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI

from devstack.models import RegisteredVersion, iris_rows, set_alias, train_and_register
from devstack.procs import DevstackError, free_port
from devstack.serving import ServingProcess, serving_service
from devstack.stack import MlflowStack, mlflow_stack
from services.common import contract

ROW = iris_rows(1)[0]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowStack]:
    logs = tmp_path_factory.mktemp("mlflow-stack")
    try:
        with mlflow_stack(log_dir=logs, db_prefix="serving_tests") as running:
            yield running
    except DevstackError as exc:
        pytest.fail(f"the MLflow stack (PostgreSQL + moto S3 + mlflow server) could not start: {exc}")


@dataclass
class Webhook:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[str]:
        with self.lock:
            return [_event_of(p) for p in self.received]

    def matching(self, event: str, **fields: str) -> list[dict[str, Any]]:
        """Alerts of `event` whose Slack fields contain every `fields` item."""
        with self.lock:
            payloads = list(self.received)
        out = []
        for payload in payloads:
            if _event_of(payload) != event:
                continue
            facts = _fields_of(payload)
            if all(facts.get(k) == v for k, v in fields.items()):
                out.append(payload)
        return out

    def wait_for(self, event: str, timeout: float = 30.0, **fields: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(event, **fields)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no {event} alert with {fields} received; got {self.events()}")


def _event_of(payload: dict[str, Any]) -> str:
    match = re.search(r"\*([a-z_.]+)\*", str(payload.get("text", "")))
    return match.group(1) if match else ""


def _fields_of(payload: dict[str, Any]) -> dict[str, str]:
    facts: dict[str, str] = {}
    for block in payload.get("blocks", []):
        for item in block.get("fields", []) or []:
            key, _, value = str(item.get("text", "")).partition("\n")
            facts[key.strip("*")] = value
    return facts


@pytest.fixture(scope="session")
def webhook() -> Iterator[Webhook]:
    port = free_port()
    hook = Webhook(url=f"http://127.0.0.1:{port}/slack")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hook.lock:
                hook.received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Model:
    """One registered model of a test, with helpers to add versions and move aliases."""

    stack: MlflowStack
    name: str
    versions: list[RegisteredVersion] = field(default_factory=list)

    def add(self, alias: str | None = None, C: float = 1.0) -> RegisteredVersion:
        version = train_and_register(self.stack.tracking_uri, self.name, alias=alias, C=C)
        self.versions.append(version)
        return version

    def point(self, alias: str, version: str) -> None:
        set_alias(self.stack.tracking_uri, self.name, alias, version)


@pytest.fixture
def new_model(stack: MlflowStack, request: pytest.FixtureRequest) -> Callable[..., Model]:
    """`new_model(champion=1.0, challenger=0.05)`: a new registered model with one version per alias
    (LogisticRegression C value), named after the test."""

    def make(**aliases: float) -> Model:
        base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40]
        model = Model(stack=stack, name=f"{base}-{secrets.token_hex(3)}")
        for alias, c in aliases.items():
            model.add(alias=alias, C=c)
        return model

    return make


@pytest.fixture
def start_service(stack: MlflowStack, tmp_path: Path) -> Iterator[Callable[..., ServingProcess]]:
    """`start_service(model, routing=..., ...)`: the service as a subprocess (Dockerfile command),
    stopped with its whole process group at the end of the test."""
    with contextlib.ExitStack() as exits:
        counter = iter(range(100))

        def start(model: Model, **kwargs: Any) -> ServingProcess:
            n = next(counter)
            kwargs.setdefault("log_dir", tmp_path / f"service-{n}-logs")
            kwargs.setdefault("log_path", tmp_path / f"service-{n}.out")
            kwargs.setdefault("aliases", ("champion",))
            try:
                return exits.enter_context(serving_service(stack.tracking_uri, model.name, **kwargs))
            except DevstackError as exc:
                pytest.fail(f"the serving service could not start: {exc}")

        yield start


def predict(
    client: httpx.Client,
    base: str,
    rows: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/predict",
) -> httpx.Response:
    return client.post(f"{base}{path}", json={"rows": rows if rows is not None else [ROW]}, headers=headers or {})


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until true; fail with `what` after `timeout` seconds (a liveness bound only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def models_of(base: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base}/models", timeout=10).json()
    return body


def loaded_versions(base: str) -> dict[str, str]:
    return {v["alias"]: v["version"] for v in models_of(base)["variants"]}


def metric_value(base: str, name: str, **labels: str) -> float:
    """Sum of the samples of metric `name` whose labels include `labels` (0 when absent)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def kserve_v2_request(
    model_name: str,
    inputs: list[tuple[str, np.ndarray, str]],
    *,
    binary: bool = False,
    request_id: str = "kserve-1",
    parameters: dict[str, Any] | None = None,
    outputs: list[dict[str, Any]] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers that KServe's SDK (kserve 0.21.0, `InferenceRESTClient(RESTConfig(protocol="v2"))
    .infer(url, InferRequest(model_name, [InferInput(name, shape, datatype)...], request_id, parameters,
    request_outputs))`) sends: `InferRequest.to_rest()` serialized with orjson, keys in its order (`id`,
    `model_name`, `inputs`, `outputs` if any, `parameters` if any), each tensor's values flat and row-major, or
    with `binary` its little-endian bytes after the JSON (`parameters.binary_data_size`, the
    Inference-Header-Content-Length header, application/octet-stream). Built by hand: kserve itself does not
    install into the locked environment (it needs pandas<3, protobuf 6 and psutil<6)."""
    tensors, blobs = [], []
    for name, values, datatype in inputs:
        tensor: dict[str, Any] = {"name": name, "shape": list(values.shape), "datatype": datatype}
        if binary:
            blob = values.astype(values.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = values.ravel().tolist()
        tensors.append(tensor)
    body: dict[str, Any] = {"id": request_id, "model_name": model_name, "inputs": tensors}
    if outputs:
        body["outputs"] = outputs
    if parameters:
        body["parameters"] = parameters
    head = orjson.dumps(body)
    if not blobs:
        return head, {"content-type": "application/json"}
    headers = {"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"}
    return head + b"".join(blobs), headers


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The contract's variables cleared, but a tracking URI nobody answers on and the model name `iris`."""
    for var in contract.ALL_VARS:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv(contract.MLFLOW_TRACKING_URI.name, "http://127.0.0.1:1")
    monkeypatch.setenv(contract.MODEL_NAME.name, "iris")
    return monkeypatch


def call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the application in this process (no lifespan, no server; app errors answered, not raised)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(send())
