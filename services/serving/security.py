"""Authentication of the prediction endpoints: THE check every prediction path calls (`Authenticator.authorize`).

The mode comes from `MLOPS_SERVING_AUTH` (`services.common.serving_auth`: none, apiKey, oidc). Health, readiness
and metrics stay open (in-cluster probes and scrapes); the admin API keeps its own reload token.

- apiKey: `Authorization: Bearer <key>`; the key's SHA-256 must be one of the hashes in the file
  `MLOPS_SERVING_API_KEYS_FILE` (mounted from a Secret). The file is re-read when it changes (checked at most
  once a second), so a rotation is: add the new hash, hand out the new key, remove the old hash; during the
  overlap both keys are accepted. A file that becomes unreadable or malformed keeps the last good set (logged).
- oidc: `Authorization: Bearer <JWT>`, verified with PyJWT against the issuer's JWKS: signature (RS256 or
  ES256 only), `iss`, `aud` and `exp` (all three required). The JWKS is fetched on first use (from `jwksUrl`,
  else from the issuer's discovery document), cached for `JWKS_TTL_SECONDS`, and fetched again when a token
  names an unknown `kid` (at most once per `UNKNOWN_KID_COOLDOWN_SECONDS` after a fetch that did not find
  one, so random kids cannot make the service hammer the issuer).

Answers: 401 without credentials, 403 with wrong ones, both with `WWW-Authenticate: Bearer ...`; 503 when
the issuer's keys cannot be fetched at all. `Refusal` carries the status and headers; `refusal_response`
renders it in the service's one error shape (for paths that answer without FastAPI's exception handlers).
`python -m services.serving.security new-key` prints a fresh key and the line its hash takes in the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Gauge

from services.common.serving_auth import OIDC_ALGORITHMS, ApiKeyAuth, AuthConfig, OidcAuth
from services.serving.routes.bodies import json_response
from services.serving.schema import RequestError

log = logging.getLogger("mlops.serving.security")

KEYS_CHECK_SECONDS = 1.0  # how often the keys file's identity (inode, size, mtime) is looked at
JWKS_TTL_SECONDS = 600.0
UNKNOWN_KID_COOLDOWN_SECONDS = 30.0
JWT_LEEWAY_SECONDS = 30
_HASH_LINE = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})(?:\s+.*)?$")


class Refusal(RequestError):
    """A request refused before it reaches a model: HTTP status, message and response headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, message, "authorization" if status in (401, 403) else None)
        self.headers = dict(headers or {})


def refusal_response(refusal: Refusal) -> Response:
    """The answer to a refused request: the service's error body with the refusal's headers."""
    return json_response(refusal.body(), refusal.status, headers=refusal.headers)


def _challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="serving"'
    if error:
        value += f', error="{error}"'
    if description:
        value += ', error_description="' + description.replace('"', "'") + '"'
    return {"WWW-Authenticate": value}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def key_hash(key: str) -> str:
    """The hex SHA-256 of an API key, as the keys file lists it."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


# --- API keys -------------------------------------------------------------------------------------------
def parse_key_file(text: str) -> frozenset[str]:
    """The hashes of a keys file: one per line, `<64 hex>` or `sha256:<64 hex>`, optionally followed by a
    label; blank lines and `#` comments ignored. Raises ValueError naming the first bad line."""
    hashes = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _HASH_LINE.match(line)
        if match is None:
            raise ValueError(f"line {number} is not a SHA-256 hash (64 hex digits, optionally 'sha256:' first)")
        hashes.add(match.group(1).lower())
    return frozenset(hashes)


def read_key_file(path: str | Path) -> frozenset[str]:
    """The hashes of the file at `path` (OSError when unreadable, ValueError when malformed)."""
    return parse_key_file(Path(path).read_text(encoding="utf-8"))


class ApiKeys:
    """The valid key hashes, re-read from `path` whenever the file changes (several may be valid at once)."""

    def __init__(
        self,
        path: str | Path,
        *,
        check_seconds: float = KEYS_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        gauge: Gauge | None = None,
    ) -> None:
        self.path = Path(path)
        self.check_seconds = check_seconds
        self.clock = clock
        self.gauge = gauge
        self.hashes: frozenset[str] = frozenset()
        self._identity: tuple[int, ...] | None = None
        self._checked = -float("inf")
        self.refresh(force=True)

    def _stat(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.path)  # follows the symlinks of a mounted Secret (swapped atomically on update)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed since the last read; keep the last good set if it cannot be read."""
        self._checked = self.clock()
        identity = self._stat()
        if identity is not None and identity == self._identity and not force:
            return
        try:
            hashes = read_key_file(self.path)
        except (OSError, ValueError) as exc:
            log.error(
                "API keys file %s unusable, keeping the %d hashes read before: %s", self.path, len(self.hashes), exc
            )
            self._identity = identity
            return
        if hashes != self.hashes:
            log.info("API keys file %s read: %d valid key hashes", self.path, len(hashes), extra={"keys": len(hashes)})
        if not hashes:
            log.warning("API keys file %s lists no key: every prediction request is refused", self.path)
        self.hashes, self._identity = hashes, identity
        if self.gauge is not None:
            self.gauge.set(len(hashes))

    def valid(self, key: str) -> bool:
        if self.clock() - self._checked >= self.check_seconds:
            self.refresh()
        return key_hash(key) in self.hashes


# --- OIDC -----------------------------------------------------------------------------------------------
Fetch = Callable[[str], Awaitable[Any]]


async def fetch_json(url: str) -> Any:
    """GET a JSON document (the issuer's discovery document or JWKS), 10 s at most."""
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        response = await client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        return response.json()


class OidcVerifier:
    """Verifies JWTs against the issuer's JWKS, cached and refreshed on an unknown `kid`."""

    def __init__(
        self,
        config: OidcAuth,
        *,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = JWKS_TTL_SECONDS,
        cooldown: float = UNKNOWN_KID_COOLDOWN_SECONDS,
    ) -> None:
        self.config = config
        self.fetch = fetch
        self.clock = clock
        self.ttl = ttl
        self.cooldown = cooldown
        self.keys: dict[str | None, jwt.PyJWK] = {}
        self.fetched_at: float | None = None
        self.fetches = 0
        self._missed_at = -float("inf")
        self._lock = asyncio.Lock()

    async def _jwks_url(self) -> str:
        if self.config.jwksUrl:
            return self.config.jwksUrl
        discovery = await self.fetch(self.config.issuer.rstrip("/") + "/.well-known/openid-configuration")
        url = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
        if not isinstance(url, str):
            raise ValueError("the issuer's discovery document has no jwks_uri")
        return url

    async def refresh(self) -> None:
        """Fetch the JWKS (one fetch at a time; callers that waited for a fetch in progress reuse it)."""
        started = self.fetched_at
        async with self._lock:
            if self.fetched_at != started:
                return
            jwks = await self.fetch(await self._jwks_url())
            keys: dict[str | None, jwt.PyJWK] = {}
            for raw in jwks.get("keys", []) if isinstance(jwks, dict) else []:
                if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
                    continue
                try:
                    keys[raw.get("kid")] = jwt.PyJWK(raw)
                except jwt.PyJWTError as exc:
                    log.info("JWKS key %s skipped: %s", raw.get("kid"), exc)
            self.keys, self.fetched_at = keys, self.clock()
            self.fetches += 1

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        fetched = self.fetched_at is None or self.clock() - self.fetched_at >= self.ttl
        if fetched:
            await self._refresh_or_keep()
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        key = self.keys.get(kid)
        if key is None and not fetched and self.clock() - self._missed_at >= self.cooldown:
            await self._refresh_or_keep()  # the issuer may have added a key since the last fetch
            fetched = True
            key = self.keys.get(kid)
        if key is None:
            if fetched:
                self._missed_at = self.clock()
            raise Refusal(403, f"unknown signing key {kid!r}", _challenge("invalid_token", "unknown signing key"))
        return key

    async def _refresh_or_keep(self) -> None:
        try:
            await self.refresh()
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.error("the issuer's keys could not be fetched: %s: %s", type(exc).__name__, exc)
            if not self.keys:
                raise Refusal(
                    503, "the issuer's signing keys cannot be fetched; retry later", {"Retry-After": "5"}
                ) from exc

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; `Refusal` (403, or 503 without keys) when it does not pass."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Refusal(403, f"malformed token: {exc}", _challenge("invalid_token", "malformed token")) from None
        alg = header.get("alg")
        if alg not in OIDC_ALGORITHMS:
            raise Refusal(
                403,
                f"token algorithm {alg!r} is not accepted (only {', '.join(OIDC_ALGORITHMS)})",
                _challenge("invalid_token", "algorithm not accepted"),
            )
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None)
        if key.algorithm_name != alg:  # the key decides the algorithm, never the token alone
            raise Refusal(
                403,
                f"token algorithm {alg!r} does not match its key's ({key.algorithm_name})",
                _challenge("invalid_token", "algorithm does not match the key"),
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=JWT_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Refusal(403, "the token has expired", _challenge("invalid_token", "token expired")) from None
        except jwt.InvalidAudienceError:
            raise Refusal(
                403,
                f"the token is not for audience {self.config.audience!r}",
                _challenge("invalid_token", "wrong audience"),
            ) from None
        except jwt.InvalidIssuerError:
            raise Refusal(
                403, "the token is from another issuer", _challenge("invalid_token", "wrong issuer")
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:  # bad signature, key/algorithm mismatch, claims
            raise Refusal(
                403, f"invalid token: {type(exc).__name__}: {exc}", _challenge("invalid_token", "invalid token")
            ) from None
        return claims


# --- the check --------------------------------------------------------------------------------------------
class Authenticator:
    """`authorize(headers)`: None when the request may reach a model, else the `Refusal` to answer."""

    def __init__(self, mode: str, api_keys: ApiKeys | None = None, oidc: OidcVerifier | None = None) -> None:
        self.mode = mode
        self.api_keys = api_keys
        self.oidc = oidc

    @classmethod
    def build(
        cls, config: AuthConfig, keys_file: str | None, registry: CollectorRegistry | None = None
    ) -> Authenticator:
        if isinstance(config, ApiKeyAuth):
            if keys_file is None:
                raise ValueError("apiKey authentication needs the keys file")
            gauge = None
            if registry is not None:
                gauge = Gauge(
                    "serving_api_keys",
                    "API key hashes currently accepted (two during a rotation's overlap).",
                    registry=registry,
                    multiprocess_mode="mostrecent",
                )
            return cls(config.mode, api_keys=ApiKeys(keys_file, gauge=gauge))
        if isinstance(config, OidcAuth):
            return cls(config.mode, oidc=OidcVerifier(config))
        return cls(config.mode)

    async def authorize(self, headers: Mapping[str, str]) -> Refusal | None:
        """Check a request's `Authorization` header (`headers` is case-insensitive, e.g. Starlette's)."""
        if self.mode == "none":
            return None
        token = bearer_token(headers.get("authorization"))
        if token is None:
            return Refusal(401, "a bearer token is required (Authorization: Bearer ...)", _challenge())
        if self.api_keys is not None:
            valid = self.api_keys.valid(token)
            return None if valid else Refusal(403, "unknown API key", _challenge("invalid_token", "unknown API key"))
        if self.oidc is not None:
            try:
                await self.oidc.verify(token)
            except Refusal as refusal:
                return refusal
            return None
        return Refusal(403, f"authentication mode {self.mode!r} has no verifier", _challenge())


def main(argv: list[str]) -> int:
    if argv[1:] != ["new-key"]:
        print("usage: python -m services.serving.security new-key", file=sys.stderr)
        return 2
    key = secrets.token_urlsafe(32)
    print(f"key (give it to the client, store it nowhere else): {key}")
    print(f"line for the keys file (the Secret):                 sha256:{key_hash(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
