"""The real service admits predictions only with valid credentials: with API keys (no key 401, a wrong key 403,
a valid key 200; keys rotated at run time by rewriting the keys file, old and new accepted during the overlap,
the old refused once removed) and with OIDC tokens checked against a local issuer's JWKS served over HTTP
(valid RS256 and ES256, expired, wrong audience, wrong signature, a key the issuer adds later, an unknown kid).
Health, readiness and metrics stay open; the admin API keeps its own token; docs can be switched off (404)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.models import train_and_register
from devstack.procs import free_port
from devstack.serving import ServingProcess, serving_service
from devstack.stack import MlflowStack
from services.common import contract
from services.serving.security import key_hash
from tests.services.serving.conftest import ROW, metric_value, wait_until
from tests.services.serving.test_security_units import Issuer

pytestmark = [pytest.mark.servers, pytest.mark.slow]

PATHS = ("/predict", "/variants/champion/predict")


def post(base: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{base}{path}", json={"rows": [ROW]}, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def model(stack: MlflowStack) -> str:
    train_and_register(stack.tracking_uri, "security-iris", alias="champion")
    return "security-iris"


# --- API keys -------------------------------------------------------------------------------------------------
@dataclass
class KeyedService:
    svc: ServingProcess
    keys_file: Path


@pytest.fixture(scope="module")
def keyed(stack: MlflowStack, model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedService]:
    tmp = tmp_path_factory.mktemp("api-keys")
    keys_file = tmp / "keys"
    keys_file.write_text(f"# iris clients\nsha256:{key_hash('key-one')} client-a\n")
    env = {
        contract.SERVING_AUTH.name: json.dumps({"mode": "apiKey", "keysSecret": "iris-api-keys"}),
        contract.SERVING_API_KEYS_FILE.name: str(keys_file),
        contract.SERVING_PUBLIC_DOCS.name: "false",
    }
    with serving_service(
        stack.tracking_uri, model, extra_env=env, log_dir=tmp / "logs", log_path=tmp / "service.out"
    ) as svc:
        yield KeyedService(svc, keys_file)


@pytest.mark.parametrize("path", PATHS)
def test_no_key_is_401_wrong_key_403_valid_key_200(keyed: KeyedService, path: str) -> None:
    base = keyed.svc.base_url
    missing = post(base, path)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["field"] == "authorization"
    for header in ("Bearer", "Basic a2V5LW9uZQ==", "key-one"):  # no bearer token at all
        answer = httpx.post(f"{base}{path}", json={"rows": [ROW]}, headers={"Authorization": header}, timeout=30)
        assert answer.status_code == 401, (header, answer.text)
    for wrong in ("key-on", "KEY-ONE", "key-one-and-more"):
        assert post(base, path, wrong).status_code == 403, wrong
    refused = post(base, path, "key-two")
    assert refused.status_code == 403
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    ok = post(base, path, "key-one")
    assert ok.status_code == 200, ok.text
    assert ok.json()["alias"] == "champion"


def test_health_readiness_and_metrics_stay_open_admin_keeps_its_token(keyed: KeyedService) -> None:
    base = keyed.svc.base_url
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{base}{path}", timeout=30).status_code == 200, path
    reload_path = contract.reload_path("champion")
    by_api_key = httpx.post(f"{base}{reload_path}", headers={"Authorization": "Bearer key-one"}, timeout=30)
    assert by_api_key.status_code == 403
    by_token = httpx.post(
        f"{base}{reload_path}", headers={"Authorization": f"Bearer {keyed.svc.reload_token}"}, timeout=60
    )
    assert by_token.status_code == 200, by_token.text
    assert metric_value(base, "serving_rejected_requests_total", status="401") >= 1


@pytest.mark.parametrize("path", PATHS)
def test_the_pipelines_admin_token_may_predict_to_verify_a_promotion(keyed: KeyedService, path: str) -> None:
    """The DAGs verify a promotion with a prediction and hold only the admin (reload) token: it is accepted
    for predictions whatever serving.auth says, and a token that merely resembles it is not."""
    token = keyed.svc.reload_token
    assert token
    ok = post(keyed.svc.base_url, path, token)
    assert ok.status_code == 200, ok.text
    assert post(keyed.svc.base_url, path, token + "x").status_code == 403


def test_docs_and_openapi_are_404_when_not_public(keyed: KeyedService) -> None:
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(f"{keyed.svc.base_url}{path}", timeout=30).status_code == 404, path


def test_keys_rotate_without_downtime(keyed: KeyedService) -> None:
    base, keys_file = keyed.svc.base_url, keyed.keys_file
    assert post(base, "/predict", "key-one").status_code == 200
    assert post(base, "/predict", "key-new").status_code == 403
    # 1. the new key's hash is added beside the old one (a Secret update swaps the mounted file)
    swap = keys_file.with_suffix(".next")
    swap.write_text(f"sha256:{key_hash('key-one')} client-a\nsha256:{key_hash('key-new')} client-a, rotated\n")
    swap.replace(keys_file)
    wait_until(lambda: post(base, "/predict", "key-new").status_code == 200, 30, "the new key to be accepted")
    # 2. the overlap: clients still on the old key keep working
    assert post(base, "/predict", "key-one").status_code == 200
    assert metric_value(base, "serving_api_keys") == 2
    # 3. the old key is retired
    swap.write_text(f"sha256:{key_hash('key-new')} client-a\n")
    swap.replace(keys_file)
    wait_until(lambda: post(base, "/predict", "key-one").status_code == 403, 30, "the old key to be refused")
    assert post(base, "/predict", "key-new").status_code == 200
    # 4. a broken file keeps the keys read before it
    keys_file.write_text("not a hash\n")
    assert post(base, "/predict", "key-new").status_code == 200


# --- OIDC ---------------------------------------------------------------------------------------------------
@dataclass
class OidcService:
    svc: ServingProcess
    issuer: Issuer
    requests: list[str]


@pytest.fixture(scope="module")
def oidc(stack: MlflowStack, model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcService]:
    port = free_port()
    issuer = Issuer(url=f"http://127.0.0.1:{port}", audience="iris-predictions")
    issuer.add_key("rsa-1")
    issuer.add_key("ec-1", kind="EC")
    issuer.add_key("rsa-stranger", publish=False)
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            documents = {"/.well-known/openid-configuration": issuer.discovery(), "/jwks.json": issuer.jwks()}
            body = json.dumps(documents[self.path]).encode() if self.path in documents else b"{}"
            self.send_response(200 if self.path in documents else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = tmp_path_factory.mktemp("oidc")
    env = {contract.SERVING_AUTH.name: json.dumps({"mode": "oidc", "issuer": issuer.url, "audience": issuer.audience})}
    try:
        with serving_service(
            stack.tracking_uri, model, extra_env=env, log_dir=tmp / "logs", log_path=tmp / "service.out"
        ) as svc:
            yield OidcService(svc, issuer, requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", PATHS)
def test_valid_tokens_are_200_and_no_token_401(oidc: OidcService, path: str) -> None:
    base, issuer = oidc.svc.base_url, oidc.issuer
    assert post(base, path).status_code == 401
    for kid in ("rsa-1", "ec-1"):
        answer = post(base, path, issuer.token(kid))
        assert answer.status_code == 200, (kid, answer.text)
    # the keys were found through the discovery document, then cached
    assert oidc.requests[:2] == ["/.well-known/openid-configuration", "/jwks.json"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [("expired", "expired"), ("wrong audience", "audience"), ("wrong signature", "Signature")],
)
def test_bad_tokens_are_403(oidc: OidcService, case: str, reason: str) -> None:
    issuer = oidc.issuer
    token = {
        "expired": lambda: issuer.token(expires_in=-3600),
        "wrong audience": lambda: issuer.token(audience="another-api"),
        "wrong signature": lambda: issuer.token("rsa-1", sign_with="rsa-stranger"),
    }[case]()
    answer = post(oidc.svc.base_url, "/predict", token)
    assert answer.status_code == 403, answer.text
    assert reason in answer.json()["detail"]
    assert answer.headers["www-authenticate"].startswith('Bearer realm="serving", error="invalid_token"')


def test_a_key_the_issuer_adds_is_fetched_then_an_unknown_kid_is_403(oidc: OidcService) -> None:
    base, issuer = oidc.svc.base_url, oidc.issuer
    fetched = oidc.requests.count("/jwks.json")
    issuer.add_key("rsa-2")  # the issuer rotates its signing keys
    answer = post(base, "/predict", issuer.token("rsa-2"))
    assert answer.status_code == 200, answer.text
    assert oidc.requests.count("/jwks.json") == fetched + 1
    unknown = post(base, "/predict", issuer.token("no-such-kid", sign_with="rsa-1"))
    assert unknown.status_code == 403 and "unknown signing key" in unknown.json()["detail"]
    assert post(base, "/predict", issuer.token("rsa-2")).status_code == 200
