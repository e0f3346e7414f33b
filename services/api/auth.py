"""Bearer tokens of the API: format, hashing, scopes. Pure functions (no database, no HTTP).

A token is `mlops_<id>_<secret>`: `id` (12 hex characters) is public and finds the stored row; `secret` is 32
random bytes (urlsafe base64). Only the SHA-256 of the whole token is stored; a presented token is hashed and
compared with the stored hash in constant time. The admin token (from a Kubernetes Secret) is never stored:
its hash is kept in memory and compared the same way; it holds every scope and every model.

A stored token expires (`expires_at`) and may be limited to some models (`models`): it then acts on those
models only, on every route, and sees only their events (`Principal.check_model`, `Principal.models`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from services.api.errors import ApiError

PREFIX = "mlops"
_TOKEN = re.compile(r"^mlops_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
ADMIN_PRINCIPAL = "admin"


class Scope(StrEnum):
    READ = "read"
    TRAIN = "train"
    DEPLOY = "deploy"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the admin token or one stored token (its id), what it may do, and on which models
    (`models` None: every model)."""

    id: str
    name: str
    scopes: frozenset[Scope]
    models: frozenset[str] | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def check_model(self, model: str, field: str = "model") -> None:
        """ApiError 403 naming `model` unless this token may act on it."""
        if not self.may_use(model):
            allowed = ", ".join(sorted(self.models or ()))
            raise ApiError(403, f"this token is limited to the models {allowed}: not {model!r}", field)

    def model_filter(self) -> list[str] | None:
        """The models a listing or an event stream is limited to (None: every model)."""
        return None if self.models is None else sorted(self.models)


ADMIN = Principal(ADMIN_PRINCIPAL, "admin token", ALL_SCOPES)


@dataclass(frozen=True)
class NewToken:
    id: str
    token: str  # shown once, never stored
    hash: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> NewToken:
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, token, digest(token))


def token_id(token: str) -> str | None:
    """The public id of a well-formed token, None for anything else."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def matches(token: str, stored_hash: str) -> bool:
    """Whether `token` hashes to `stored_hash` (constant-time comparison)."""
    return hmac.compare_digest(digest(token).encode(), stored_hash.encode())


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names; ValueError naming an unknown one."""
    out = set()
    for value in values:
        try:
            out.add(Scope(value))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {value!r}; scopes: {known}") from None
    return frozenset(out)
