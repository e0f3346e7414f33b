"""Who may call a model's prediction endpoints: the `serving.auth` modes, defined once.

- `NoAuth` (`{"mode": "none"}`): anyone who reaches the service.
- `ApiKeyAuth` (`{"mode": "apiKey", "keysSecret": "..."}`): `Authorization: Bearer <key>` where the SHA-256
  of the key is one of the lines of a file mounted from the Kubernetes Secret `keysSecret` (the file the pod
  reads is `MLOPS_SERVING_API_KEYS_FILE`). Several hashes may be valid at once, so keys rotate without
  downtime: add the new hash, hand out the new key, remove the old hash.
- `OidcAuth` (`{"mode": "oidc", "issuer": ..., "audience": ..., "jwksUrl": ...}`): `Authorization: Bearer
  <JWT>` signed by one of the issuer's keys (RS256 or ES256), for `audience`, not expired. Without `jwksUrl`
  the keys' URL is read from the issuer's `/.well-known/openid-configuration`.

`AuthConfig` is their union and `parse_auth` validates a JSON object into one (the service at start from
`MLOPS_SERVING_AUTH`, the stack settings before a deploy); `env_value()` is what that variable carries.
This module imports nothing but pydantic: the Pulumi program loads it.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

# A Kubernetes object name (DNS-1123 subdomain).
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
# The JWT signature algorithms accepted: asymmetric only (a shared-secret HS256 token or `none` never passes).
OIDC_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _https_url(value: str) -> str:
    """An https URL (plain http only on the loopback interface, for local runs and tests)."""
    parts = urlsplit(value)
    if not parts.netloc or parts.scheme not in ("https", "http"):
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError(f"{value!r} must use https (plain http is accepted on the loopback interface only)")
    return value


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str

    def env_value(self) -> str:
        """The setting as `MLOPS_SERVING_AUTH` carries it: JSON with sorted keys, unset fields left out."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True)


class NoAuth(_Auth):
    mode: Literal["none"] = "none"


class ApiKeyAuth(_Auth):
    mode: Literal["apiKey"] = "apiKey"
    # The Secret holding the hashes (the component mounts it); the service itself reads the mounted file.
    keysSecret: Annotated[str, Field(pattern=SECRET_NAME_PATTERN)] | None = None  # camelCase: the stack file's key


class OidcAuth(_Auth):
    mode: Literal["oidc"] = "oidc"
    issuer: str
    audience: Annotated[str, Field(min_length=1)]
    jwksUrl: str | None = None  # camelCase: the stack file's key

    @field_validator("issuer", "jwksUrl")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _https_url(value)


AuthConfig = Annotated[NoAuth | ApiKeyAuth | OidcAuth, Field(discriminator="mode")]
AUTH_MODES: tuple[str, ...] = ("none", "apiKey", "oidc")
_AUTH: TypeAdapter[AuthConfig] = TypeAdapter(AuthConfig)


def parse_auth(value: object) -> AuthConfig:
    """Validate an auth object. Raises ValueError whose message names each wrong field."""
    try:
        return _AUTH.validate_python(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"][1:])  # the first item is the mode's union member
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}" if loc else msg)
        raise ValueError("; ".join(problems)) from None
