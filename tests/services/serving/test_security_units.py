"""In-process tests of the serving service's admission and hostile-input pieces, no server: the `serving.auth`
settings; API key files (format, rotation with old and new keys accepted together, a broken file keeps the
last good keys); OIDC verification against a locally generated JWKS (valid RS256/ES256, expired, wrong audience,
issuer and signature, algorithm confusion, unknown kid fetched once then throttled, issuer down); the
concurrency limit; the JSON parser's out-of-range integers; and the application's wiring: every prediction
route is admitted, health and metrics are not, docs can be switched off, an unexpected error names the request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.common import contract
from services.common.serving_auth import ApiKeyAuth, NoAuth, OidcAuth, parse_auth
from services.serving.app import ENDPOINTS, create_app
from services.serving.jsonbody import parse_json
from services.serving.limits import ConcurrencyLimiter
from services.serving.routes.deps import ServingState
from services.serving.schema import RequestError
from services.serving.security import (
    ApiKeys,
    Authenticator,
    OidcVerifier,
    Refusal,
    bearer_token,
    key_hash,
    parse_key_file,
)
from services.serving.settings import Settings, SettingsError
from tests.services.serving.conftest import call


# --- a local OIDC issuer (also used by the real-server tests) --------------------------------------------
@dataclass
class Issuer:
    """Signing keys, their JWKS and tokens of a local OIDC issuer."""

    url: str
    audience: str = "serving-tests"
    private: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)  # kids in the JWKS

    def add_key(self, kid: str, kind: str = "RSA", publish: bool = True) -> None:
        if kind == "RSA":
            self.private[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private[kid] = ec.generate_private_key(ec.SECP256R1())
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            key = self.private[kid]
            rsa_key = isinstance(key, rsa.RSAPrivateKey)
            algorithm = jwt.algorithms.RSAAlgorithm if rsa_key else jwt.algorithms.ECAlgorithm
            public: dict[str, Any] = dict(algorithm.to_jwk(key.public_key(), as_dict=True))  # type: ignore[call-overload]
            keys.append({**public, "kid": kid, "use": "sig", "alg": "RS256" if rsa_key else "ES256"})
        return {"keys": keys}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks.json"}

    def token(
        self,
        kid: str = "rsa-1",
        *,
        sign_with: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        expires_in: float = 300,
        algorithm: str | None = None,
        **claims: Any,
    ) -> str:
        key = self.private[sign_with or kid]
        now = int(time.time())
        body = {
            "iss": issuer or self.url,
            "aud": audience or self.audience,
            "sub": "client-1",
            "iat": now,
            "exp": now + int(expires_in),
            **claims,
        }
        alg = algorithm or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    made = Issuer(url="https://issuer.example")
    made.add_key("rsa-1")
    made.add_key("ec-1", kind="EC")
    made.add_key("rsa-stranger", publish=False)  # signs "wrong signature" tokens
    return made


@dataclass
class FakeIssuerHttp:
    """The fetch function of `OidcVerifier`: serves the issuer's documents and counts the fetches."""

    issuer: Issuer
    calls: list[str] = field(default_factory=list)
    down: bool = False

    async def __call__(self, url: str) -> Any:
        self.calls.append(url)
        if self.down:
            raise httpx.ConnectError("issuer down")
        if url.endswith("/.well-known/openid-configuration"):
            return self.issuer.discovery()
        assert url == f"{self.issuer.url}/jwks.json", url
        return self.issuer.jwks()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(issuer: Issuer, http: FakeIssuerHttp, clock: Clock, jwks_url: bool = True) -> OidcVerifier:
    config = OidcAuth(
        issuer=issuer.url, audience=issuer.audience, jwksUrl=f"{issuer.url}/jwks.json" if jwks_url else None
    )
    return OidcVerifier(config, fetch=http, clock=clock, ttl=600, cooldown=30)


def refused(coro: Any) -> Refusal:
    with pytest.raises(Refusal) as caught:
        asyncio.run(coro)
    return caught.value


# --- settings ---------------------------------------------------------------------------------------------
def test_auth_settings_parse_each_mode_and_name_wrong_fields() -> None:
    assert parse_auth({"mode": "none"}) == NoAuth()
    assert parse_auth({"mode": "apiKey", "keysSecret": "iris-api-keys"}) == ApiKeyAuth(keysSecret="iris-api-keys")
    oidc = parse_auth({"mode": "oidc", "issuer": "https://id.example", "audience": "iris"})
    assert isinstance(oidc, OidcAuth) and oidc.jwksUrl is None
    assert json.loads(oidc.env_value()) == {"mode": "oidc", "issuer": "https://id.example", "audience": "iris"}
    assert parse_auth({"mode": "oidc", "issuer": "http://127.0.0.1:9", "audience": "a"}).mode == "oidc"
    for bad, named in (
        ({"mode": "oidc", "issuer": "http://id.example", "audience": "a"}, "issuer"),
        ({"mode": "oidc", "issuer": "https://id.example"}, "audience"),
        ({"mode": "oidc", "issuer": "https://id.example", "audience": "a", "jwksUrl": "ftp://x"}, "jwksUrl"),
        ({"mode": "apiKey", "keysSecret": "Not_A_Name"}, "keysSecret"),
        ({"mode": "basic"}, "mode"),
        ({"mode": "none", "keys": 1}, "keys"),
    ):
        with pytest.raises(ValueError, match=named):
            parse_auth(bad)


def test_settings_defaults_are_open_docs_no_auth_and_a_limit(env: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert settings.auth == NoAuth() and settings.public_docs is True and settings.max_in_flight == 128


def test_settings_read_api_key_auth_with_a_readable_keys_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"sha256:{key_hash('k')} first\n")
    env.setenv(contract.SERVING_AUTH.name, '{"mode": "apiKey"}')
    env.setenv(contract.SERVING_API_KEYS_FILE.name, str(keys))
    env.setenv(contract.SERVING_PUBLIC_DOCS.name, "false")
    env.setenv(contract.SERVING_MAX_IN_FLIGHT.name, "3")
    settings = Settings.from_env()
    assert (settings.auth, settings.api_keys_file) == (ApiKeyAuth(), str(keys))
    assert (settings.public_docs, settings.max_in_flight) == (False, 3)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({contract.SERVING_AUTH: "{not json"}, contract.SERVING_AUTH),
        (
            {contract.SERVING_AUTH: '{"mode": "oidc", "issuer": "http://id.example", "audience": "a"}'},
            contract.SERVING_AUTH,
        ),
        ({contract.SERVING_AUTH: '{"mode": "apiKey"}'}, contract.SERVING_API_KEYS_FILE),
        (
            {contract.SERVING_AUTH: '{"mode": "apiKey"}', contract.SERVING_API_KEYS_FILE: "/nonexistent/keys"},
            contract.SERVING_API_KEYS_FILE,
        ),
        ({contract.SERVING_MAX_IN_FLIGHT: "0"}, contract.SERVING_MAX_IN_FLIGHT),
        ({contract.SERVING_PUBLIC_DOCS: "maybe"}, contract.SERVING_PUBLIC_DOCS),
    ],
)
def test_invalid_security_settings_name_the_variable(
    env: pytest.MonkeyPatch, values: dict[contract.EnvVar, str], named: contract.EnvVar
) -> None:
    for var, value in values.items():
        env.setenv(var.name, value)
    with pytest.raises(SettingsError, match=named.name):
        Settings.from_env()


def test_a_malformed_keys_file_stops_the_start_naming_the_line(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# rotated 2026-11\n{key_hash('k')}\nnot-a-hash\n")
    env.setenv(contract.SERVING_AUTH.name, '{"mode": "apiKey"}')
    env.setenv(contract.SERVING_API_KEYS_FILE.name, str(keys))
    with pytest.raises(SettingsError, match="line 3"):
        Settings.from_env()


# --- API keys -----------------------------------------------------------------------------------------------
def test_bearer_token_is_read_from_the_authorization_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    for header in (None, "", "Bearer", "Bearer ", "Basic abc", "abc"):
        assert bearer_token(header) is None


def test_key_file_lines_hashes_labels_and_comments() -> None:
    h1, h2 = key_hash("one"), key_hash("two")
    assert h1 == hashlib.sha256(b"one").hexdigest()
    text = f"# keys of iris\n\n{h1} client-a 2026-11\nsha256:{h2.upper()}\n"
    assert parse_key_file(text) == {h1, h2}
    with pytest.raises(ValueError, match="line 2"):
        parse_key_file(f"{h1}\n{h2[:-1]}\n")


def test_keys_rotate_with_old_and_new_accepted_during_the_overlap(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(key_hash("old") + "\n")
    clock = Clock()
    keys = ApiKeys(path, check_seconds=1.0, clock=clock)
    assert keys.valid("old") and not keys.valid("new")
    path.write_text(f"{key_hash('old')}\n{key_hash('new')} rotated in\n")  # overlap: both
    assert not keys.valid("new")  # the file is looked at again only after check_seconds
    clock.now += 1.0
    assert keys.valid("new") and keys.valid("old")
    path.write_text(key_hash("new") + "\n")  # the old key retired
    clock.now += 1.0
    assert keys.valid("new") and not keys.valid("old")


def test_a_broken_keys_file_keeps_the_last_good_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(key_hash("k") + "\n")
    clock = Clock()
    keys = ApiKeys(path, clock=clock)
    path.write_text("garbage\n")
    clock.now += 5
    assert keys.valid("k")
    path.unlink()
    clock.now += 5
    assert keys.valid("k") and not keys.valid("other")
    path.write_text(key_hash("other") + "\n")
    clock.now += 5
    assert keys.valid("other") and not keys.valid("k")


def test_api_key_authenticator_answers_401_then_403_then_admits(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(key_hash("good-key") + "\n")
    auth = Authenticator.build(ApiKeyAuth(), str(path))
    missing = asyncio.run(auth.authorize({}))
    assert missing is not None and missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = asyncio.run(auth.authorize({"authorization": "Bearer bad-key"}))
    assert wrong is not None and wrong.status == 403 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert asyncio.run(auth.authorize({"authorization": "Bearer good-key"})) is None
    assert asyncio.run(Authenticator.build(NoAuth(), None).authorize({})) is None


# --- OIDC ---------------------------------------------------------------------------------------------------
def test_valid_rs256_and_es256_tokens_pass(issuer: Issuer) -> None:
    http, clock = FakeIssuerHttp(issuer), Clock()
    check = verifier(issuer, http, clock)
    assert asyncio.run(check.verify(issuer.token("rsa-1")))["sub"] == "client-1"
    assert asyncio.run(check.verify(issuer.token("ec-1")))["aud"] == issuer.audience
    assert http.calls == [f"{issuer.url}/jwks.json"]  # fetched once, then cached


def test_the_jwks_is_found_through_the_issuers_discovery_document(issuer: Issuer) -> None:
    http = FakeIssuerHttp(issuer)
    check = verifier(issuer, http, Clock(), jwks_url=False)
    asyncio.run(check.verify(issuer.token()))
    assert http.calls == [f"{issuer.url}/.well-known/openid-configuration", f"{issuer.url}/jwks.json"]


@pytest.mark.parametrize(
    ("case", "make", "reason"),
    [
        ("expired", lambda i: i.token(expires_in=-3600), "expired"),
        ("wrong audience", lambda i: i.token(audience="another-api"), "audience"),
        ("wrong issuer", lambda i: i.token(issuer="https://evil.example"), "issuer"),
        ("wrong signature", lambda i: i.token("rsa-1", sign_with="rsa-stranger"), "Signature"),
        ("not a JWT", lambda i: "abc.def", "malformed"),
        ("HS256 with the public key as secret", lambda i: _hs256(i), "not accepted"),
        ("alg none", lambda i: jwt.encode({"aud": i.audience}, None, algorithm="none"), "not accepted"),
        ("ES256 header on an RSA key", lambda i: _retagged(i.token("ec-1"), "rsa-1"), "does not match"),
        ("no exp", lambda i: _without_exp(i), "exp"),
    ],
)
def test_bad_tokens_are_refused_403_with_a_reason(issuer: Issuer, case: str, make: Any, reason: str) -> None:
    check = verifier(issuer, FakeIssuerHttp(issuer), Clock())
    refusal = refused(check.verify(make(issuer)))
    assert refusal.status == 403, case
    assert reason in refusal.message, (case, refusal.message)
    assert refusal.headers["WWW-Authenticate"].startswith('Bearer realm="serving", error="invalid_token"')


def _hs256(issuer: Issuer) -> str:
    now = int(time.time())
    body = {"iss": issuer.url, "aud": issuer.audience, "exp": now + 60}
    return jwt.encode(body, "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256", headers={"kid": "rsa-1"})


def _retagged(token: str, kid: str) -> str:
    """The ES256 token with its header's kid pointing at an RSA key (signature untouched)."""
    import base64

    head, body, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header["kid"] = kid
    new_head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{new_head}.{body}.{sig}"


def _without_exp(issuer: Issuer) -> str:
    body = {"iss": issuer.url, "aud": issuer.audience, "sub": "x"}
    return jwt.encode(body, issuer.private["rsa-1"], algorithm="RS256", headers={"kid": "rsa-1"})


def test_an_unknown_kid_fetches_the_jwks_again_once_then_is_throttled(issuer: Issuer) -> None:
    http, clock = FakeIssuerHttp(issuer), Clock()
    check = verifier(issuer, http, clock)
    asyncio.run(check.verify(issuer.token()))
    issuer.add_key("rsa-2")  # the issuer rotates its keys: a new kid appears
    try:
        assert asyncio.run(check.verify(issuer.token("rsa-2")))["sub"] == "client-1"
        assert len(http.calls) == 2
        assert refused(check.verify(issuer.token("unknown", sign_with="rsa-1"))).status == 403
        assert len(http.calls) == 3  # looked for it once...
        assert "unknown signing key" in refused(check.verify(issuer.token("other", sign_with="rsa-1"))).message
        assert len(http.calls) == 3  # ...and not again within the cooldown
        clock.now += 30
        refused(check.verify(issuer.token("other", sign_with="rsa-1")))
        assert len(http.calls) == 4
    finally:
        issuer.published.remove("rsa-2")


def test_the_jwks_is_refreshed_after_its_ttl_and_kept_when_the_issuer_is_down(issuer: Issuer) -> None:
    http, clock = FakeIssuerHttp(issuer), Clock()
    check = verifier(issuer, http, clock)
    asyncio.run(check.verify(issuer.token()))
    clock.now += 600
    http.down = True
    assert asyncio.run(check.verify(issuer.token()))["sub"] == "client-1"  # the cached keys still serve
    assert len(http.calls) == 2
    fresh = verifier(issuer, FakeIssuerHttp(issuer, down=True), Clock())
    refusal = refused(fresh.verify(issuer.token()))
    assert (refusal.status, refusal.headers.get("Retry-After")) == (503, "5")


# --- concurrency and JSON -------------------------------------------------------------------------------------
def test_the_limiter_refuses_429_with_retry_after_when_full_and_frees_slots() -> None:
    limiter = ConcurrencyLimiter(2)
    assert limiter.try_enter() is None and limiter.try_enter() is None
    refusal = limiter.try_enter()
    assert refusal is not None and refusal.status == 429 and refusal.headers == {"Retry-After": "1"}
    limiter.leave()
    with limiter.slot():
        assert limiter.in_flight == 2
        with pytest.raises(Refusal), limiter.slot():
            pass
    assert limiter.in_flight == 1
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)


def test_serving_in_flight_shows_the_count_in_one_process_and_across_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry

    def gauge(registry: CollectorRegistry) -> float | None:
        return registry.get_sample_value("serving_in_flight")

    monkeypatch.delenv(contract.PROMETHEUS_MULTIPROC_DIR.name, raising=False)
    single = CollectorRegistry()
    limiter = ConcurrencyLimiter(3, single)
    assert limiter.try_enter() is None and limiter.try_enter() is None
    assert gauge(single) == 2  # read from the count when scraped
    limiter.leave()
    assert gauge(single) == 1
    monkeypatch.setenv(contract.PROMETHEUS_MULTIPROC_DIR.name, "/nonexistent-not-read-here")
    workers = CollectorRegistry()
    limiter = ConcurrencyLimiter(3, workers)  # a worker's value lives in its file: counted per request
    assert limiter.try_enter() is None and limiter.try_enter() is None
    limiter.leave()
    assert limiter.in_flight == 1 and gauge(workers) == 1


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"rows": [{"a": 1, "b": 1' + b"0" * 5000 + b"}]}", "rows[0].b"),
        (b'{"rows": [{"a": 1}, {"a": -9' + b"9" * 400 + b"}]}", "rows[1].a"),
        (b"[1, 2" + b"0" * 4400 + b"]", "body[1]"),
        (b"1" + b"0" * 400, "body"),
    ],
)
def test_integers_no_float_can_hold_are_422_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_json(raw)
    assert (caught.value.status, caught.value.field) == (422, field)
    assert field in caught.value.message and "out of range" in caught.value.message


def test_json_parser_keeps_big_but_finite_numbers_and_reports_malformed_bodies() -> None:
    assert parse_json(b'{"a": 123456789012345678901234567890}') == {"a": pytest.approx(1.2345678901234568e29)}
    assert parse_json(b'{"a": 1' + b"0" * 300 + b"}")["a"] == float(10**300)  # finite: the validator decides
    nan = parse_json(b'{"a": NaN}')["a"]
    assert nan != nan
    with pytest.raises(RequestError) as caught:
        parse_json(b'{"a": ')
    assert (caught.value.status, caught.value.field) == (400, "body")


# --- the application's wiring ----------------------------------------------------------------------------------
@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(key_hash("good-key") + "\n")
    return path


@pytest.fixture
def secured_app(env: pytest.MonkeyPatch, keys_file: Path) -> Iterator[FastAPI]:
    """The application with apiKey auth and the state its lifespan builds, nothing loaded (no registry reached)."""
    env.setenv(contract.SERVING_AUTH.name, '{"mode": "apiKey"}')
    env.setenv(contract.SERVING_API_KEYS_FILE.name, str(keys_file))
    env.setenv(contract.SERVING_PUBLIC_DOCS.name, "false")
    app = create_app()
    app.state.serving = ServingState.build(app.state.settings, app.state.log_file)
    yield app
    app.state.serving.manager.close()


def test_every_prediction_endpoint_is_admitted_and_nothing_else(secured_app: FastAPI) -> None:
    # every prediction endpoint is answered by the lean request path, which admits (no FastAPI route predicts)
    assert {e.path for e in ENDPOINTS} == {
        "/predict",
        "/variants/{alias}/predict",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
        "/invocations",
    }
    routes = [r.path for r in secured_app.routes if isinstance(r, APIRoute)]
    assert not [p for p in routes if p.endswith(("/predict", "/infer", "/invocations"))], routes
    bodies = {
        "/predict": {"rows": [{}]},
        "/variants/champion/predict": {"rows": [{}]},
        "/v2/models/iris/infer": {"inputs": []},
        "/invocations": {"dataframe_records": [{}]},
    }
    for path, body in bodies.items():
        assert call(secured_app, "POST", path, json=body).status_code == 401
        wrong = call(secured_app, "POST", path, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403 and "www-authenticate" in wrong.headers
        good = call(secured_app, "POST", path, json=body, headers={"Authorization": "Bearer good-key"})
        assert good.status_code == 503, good.text  # admitted: nothing is loaded in this process
    assert call(secured_app, "POST", "/predict", json={}, headers={"Authorization": "Bearer x"}).json()["field"] == (
        "authorization"
    )
    for path in ("/healthz", "/metrics", "/v2/health/live", "/ping"):
        assert call(secured_app, "GET", path).status_code in (200, 503), path
    metrics = call(secured_app, "GET", "/metrics").text
    assert f'serving_rejected_requests_total{{status="401"}} {float(len(bodies))}' in metrics
    assert "serving_api_keys 1.0" in metrics and "serving_in_flight 0.0" in metrics


def test_docs_are_404_when_not_public(secured_app: FastAPI, env: pytest.MonkeyPatch) -> None:
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert call(secured_app, "GET", path).status_code == 404, path
    env.setenv(contract.SERVING_PUBLIC_DOCS.name, "true")
    public = create_app()
    assert call(public, "GET", "/openapi.json").status_code == 200
    assert call(public, "GET", "/docs").status_code == 200


def test_an_unexpected_error_is_500_naming_the_request_id(secured_app: FastAPI) -> None:
    @secured_app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    answer = call(secured_app, "GET", "/boom", headers={"X-Request-Id": "rid-123"})
    assert answer.status_code == 500
    assert answer.json()["detail"] == "internal error (RuntimeError); request id rid-123"
    assert answer.headers["x-request-id"] == "rid-123"
    generated = call(secured_app, "GET", "/boom")
    rid = generated.headers["x-request-id"]
    assert len(rid) == 32 and generated.json()["detail"].endswith(f"request id {rid}")
