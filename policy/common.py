"""What every policy module shares: reading the SDK's property bags, and knowing which values were secret.

Properties arrive as the SDK hands them over: camelCase, numbers as floats, wrapped in the SDK's
unknown-checking proxies (`Mapping`/`Sequence`, not `dict`/`list`). Reading a value that is unknown
during preview raises the SDK's `UnknownValueError`, which the SDK reports as "can't run policy ...
during preview" (advisory); `pulumi up` then checks the known value.

Secrets: the engine sends secret values to the pack marked secret (its analyzer marshals properties
with `KeepSecrets`), but `pulumi_policy` unwraps them before a policy's `validate` sees them, so a
policy could not tell `pulumi.Output.secret(pw)` from a plaintext password. `install_secret_marks()`
(called when `policy.policies` is imported, so in the pack's process before it serves anything)
makes the SDK keep that mark: a string that was secret arrives as `SecretText`, a `str` subclass
that every other check reads as the plain string it is. Everything inside a secret object or list
is secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pulumi_policy.policy as _sdk_policy
from google.protobuf import json_format
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.deserialize import deserialize_properties as _sdk_deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

__all__ = ["UnknownValueError"]


# --- secrets ---------------------------------------------------------------------------------------
class SecretText(str):
    """A string the engine handed to the pack marked secret."""

    __slots__ = ()


def is_secret(value: Any) -> bool:
    return isinstance(value, SecretText)


def _mark(value: Any) -> Any:
    if isinstance(value, str):
        return SecretText(value)
    if isinstance(value, list):
        return [_mark(v) for v in value]
    if isinstance(value, dict):
        return {k: _mark(v) for k, v in value.items()}
    return value


def _keep_secret_marks(value: Any) -> Any:
    if isinstance(value, list):
        return [_keep_secret_marks(v) for v in value]
    if isinstance(value, dict):
        if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG and "value" in value:
            return _mark(_keep_secret_marks(value["value"]))
        return {k: _keep_secret_marks(v) for k, v in value.items()}
    return value


def deserialize_properties(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
    """The SDK's `deserialize_properties`, except that secret strings arrive as `SecretText`.

    `proxy_secrets=True` is the SDK's remediation path (its own secret proxies): left to the SDK.
    """
    if proxy_secrets:
        return _sdk_deserialize_properties(props, proxy_secrets)
    return _sdk_deserialize_properties(_keep_secret_marks(props))


# The SDK's analyzer converts a resource's properties (protobuf -> dict -> secrets -> unknown-checking
# proxies) once per policy, although they are the same for every policy: with ~40 policies that is
# most of the pack's time. These memos convert each message once. They are keyed on the identity of
# the object converted and hold it, so an id cannot be reused while its entry lives; policies only
# read the properties, so sharing the result between them changes nothing.
_MEMO_LIMIT = 8192
_memo: dict[tuple[str, int], tuple[Any, Any]] = {}


def _memoized(tag: str, obj: Any, compute: Callable[[Any], Any]) -> Any:
    key = (tag, id(obj))
    hit = _memo.get(key)
    if hit is not None and hit[0] is obj:
        return hit[1]
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    result = compute(obj)
    _memo[key] = (obj, result)
    return result


class _MemoJsonFormat:
    """`google.protobuf.json_format` as `pulumi_policy.policy` uses it, with `MessageToDict` memoized."""

    def MessageToDict(self, message: Any, **kwargs: Any) -> Any:  # the protobuf name
        if kwargs:
            return json_format.MessageToDict(message, **kwargs)
        return _memoized("dict", message, json_format.MessageToDict)

    def __getattr__(self, name: str) -> Any:
        return getattr(json_format, name)


def _analyzer_deserialize(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
    if proxy_secrets:
        return deserialize_properties(props, proxy_secrets)
    return _memoized("props", props, deserialize_properties)


def _analyzer_proxy(props: dict[str, Any]) -> Any:
    return _memoized("proxy", props, unknown_checking_proxy)


def install_secret_marks() -> None:
    """Make the SDK's analyzer (`Analyze`, `AnalyzeStack`) keep secret marks (see the module docstring),
    converting each resource's properties once rather than once per policy."""
    for name in ("deserialize_properties", "unknown_checking_proxy", "json_format"):
        if not hasattr(_sdk_policy, name):  # pragma: no cover - the SDK changed: fail loudly, not silently
            raise RuntimeError(f"pulumi_policy.policy.{name} is gone: update policy/common.py")
    _sdk_policy.deserialize_properties = _analyzer_deserialize
    _sdk_policy.unknown_checking_proxy = _analyzer_proxy
    _sdk_policy.json_format = _MemoJsonFormat()


# --- reading property bags ---------------------------------------------------------------------------
def get(obj: Any, *path: str | int) -> Any:
    """`obj[path[0]][path[1]]...`, or None where a level is missing or of the wrong shape."""
    cur = obj
    for key in path:
        if isinstance(key, int):
            if not is_list(cur) or key >= len(cur):
                return None
            cur = cur[key]
        else:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(key)
        if cur is None:
            return None
    return cur


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def as_list(value: Any) -> list[Any]:
    """A JSON/IAM "string or list" field as a list (None -> [])."""
    if value is None:
        return []
    if is_list(value):
        return [value[i] for i in range(len(value))]
    return [value]


def truthy(value: Any) -> bool:
    """True for True and for the strings Terraform providers sometimes store ("true")."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def known(props: Any, key: str) -> Any:
    """`props[key]`, or None when it is missing or not known yet (preview)."""
    if not isinstance(props, Mapping):
        return None
    try:
        return props.get(key)
    except UnknownValueError:
        return None


def known_items(value: Any) -> Iterator[tuple[str | int, Any]]:
    """The (key or index, value) pairs of a mapping or list whose values are known (unknown ones skipped)."""
    if isinstance(value, Mapping):
        for key in value:
            try:
                yield key, value[key]
            except UnknownValueError:
                continue
    elif is_list(value):
        for i in range(len(value)):
            try:
                yield i, value[i]
            except UnknownValueError:
                continue


def show_number(value: Any) -> str:
    """1000.0 (numbers arrive as floats) -> '1000'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def kind(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def group_kind(resource_type: str) -> str | None:
    """`kubernetes:apps/v1:Deployment` -> `apps:Deployment` (None for anything that is not a Kubernetes object)."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    return f"{parts[1].split('/')[0]}:{parts[2]}"


def k8s_name(props: Mapping[str, Any], fallback: str) -> str:
    meta = get(props, "metadata")
    name = get(meta, "name") or fallback
    ns = get(meta, "namespace")
    return f"{ns}/{name}" if ns else str(name)


def json_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM/S3 policy document given as a JSON string or as an object; None if it is neither."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError:
            return None
        return doc if isinstance(doc, Mapping) else None
    return None


def statements(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, Mapping)]
