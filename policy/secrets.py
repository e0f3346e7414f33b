"""Secret hygiene: credentials recognised by key name and by value shape, wherever the program puts them.

- ConfigMaps never hold credentials (their data is plaintext in the cluster, whatever Pulumi marks).
- Other Kubernetes objects (workloads, custom resources...) never hold credentials either: a container
  takes them from a Secret (`env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`, a secret volume).
- Everything else the program hands the engine (Helm values, Kubernetes Secrets' data, AWS and provider
  inputs) may hold a credential only as a Pulumi secret (`pulumi.Output.secret`, `config.require_secret`,
  a provider's secret output), so it is encrypted in the state and masked in previews and logs.

A key looks like it holds a credential when one of its words is a secret word (`DB_PASSWORD`,
`apiKey`, `client_secret`, `fernetKey`, `tls.key`...) unless its last word says it refers to one
(`DB_PASSWORD_FILE`, `SECRET_NAME`, `TOKEN_URL`, `existingSecret`, `secretKeyRef`...). Inside a mapping
that names a Secret (a sibling `name` or `secretName`), keys such as `passwordKey` or `keyOfSecretAccessKey`
select an entry of that Secret: they are references. A value looks like a credential by its shape: a
PEM private key, a URL with a password, an AWS access key ID, a JSON Web Token, a Slack/Teams/Discord
webhook, a Slack, GitHub or GitLab token, a Google API key, an Azure storage account key. `KEY=value`,
`key: value` and `--flag=value` lines inside strings (config files, scripts, arguments) count too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policy.common import UnknownValueError, group_kind, is_secret, k8s_name, kind, known_items

SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "credential",
        "credentials",
        "apikey",
        "privatekey",
        "secretkey",
        "accesskey",
        "fernetkey",
        "sessionkey",
    }
)
# A key whose last word is one of these refers to a secret rather than holding one:
# DB_PASSWORD_FILE=/run/secrets/pw, SECRET_NAME=mlflow-db, TOKEN_URL=https://..., ACCESS_KEY_ID=AKIA...
REFERENCE_SUFFIXES = frozenset(
    {
        "file",
        "path",
        "dir",
        "url",
        "uri",
        "endpoint",
        "host",
        "name",
        "ref",
        "env",
        "header",
        "id",
        "ttl",
        "expiry",
        "expiration",
        "length",
        "enabled",
        "mount",
        "type",
        "version",
        "rotation",
        "days",
        "arn",
        "policy",
        "required",
    }
)
# `..._KEY` is a secret (API_KEY, FERNET_KEY, SSH_KEY) unless it names a lookup or public key.
NON_SECRET_KEY_QUALIFIERS = frozenset(
    {
        "public",
        "routing",
        "partition",
        "sort",
        "cache",
        "primary",
        "foreign",
        "sticky",
        "lookup",
        "label",
        "idempotency",
        "group",
        "hash",
        "shard",
        "index",
        "object",
        "s3",
        "metric",
        "model",
        "prefix",
        "dedup",
        "dedupe",
        "map",
        "annotation",
        "username",
        "user",
        "kms",
        "topology",
    }
)
# Credential shapes, one alternation so each string is scanned once.
_SHAPES = {
    "pem": r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----",
    "webhook": (
        r"https://(?:hooks\.slack\.com/(?:services|workflows)/|[\w.-]+\.webhook\.office\.com/"
        r"|discord(?:app)?\.com/api/webhooks/)"
    ),
    "url": r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?P<pw>[^\s@/]+)@",
    "aws": r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    "jwt": r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}",
    "slack": r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    "github": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})",
    "gitlab": r"\bglpat-[A-Za-z0-9_-]{20,}",
    "google": r"\bAIza[0-9A-Za-z_-]{35}",
    "azure": r"AccountKey=[A-Za-z0-9+/=]{40,}",
}
SHAPE_NAMES = {
    "pem": "a PEM private key",
    "webhook": "a webhook URL (the URL is the credential)",
    "url": "a URL with an embedded password",
    "aws": "an AWS access key ID (its secret key is never far)",
    "jwt": "a JSON Web Token",
    "slack": "a Slack token",
    "github": "a GitHub token",
    "gitlab": "a GitLab token",
    "google": "a Google API key",
    "azure": "an Azure storage account key",
}
CREDENTIAL_SHAPES = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _SHAPES.items()))
# `KEY=value`, `key: value`, `key = value`, `--key=value`, `export KEY=value` inside a string.
ASSIGNMENT = re.compile(
    r"^\s*(?:export\s+|-{1,2})?(?P<key>[A-Za-z_][\w.-]*)\s*[=:]\s*(?P<value>\S.*?)\s*$", re.MULTILINE
)
# Values that are not credentials whatever their key: references, switches, placeholders.
NOT_A_VALUE = frozenset({"", "true", "false", "yes", "no", "on", "off", "null", "none", "~", "|", ">", "|-", ">-"})
REFERENCE_VALUE = re.compile(r"^(?:\$|\{\{|%\(|<|/[\w./-]*$)")
LITERAL = re.compile(r"""^(?:"[^"]*"|'[^']*'|[^\s()\[\]{}<>,;+*"']+)$""")
SECRET_ENTRY_NAME = re.compile(r"^[-._a-zA-Z0-9]+$")  # what a key of a Kubernetes Secret's data may be


def key_words(key: str) -> list[str]:
    """`MLOPS_SERVING_RELOAD_URL` -> [mlops, serving, reload, url]; `dbPassword` -> [db, password]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


@functools.lru_cache(maxsize=4096)
def secret_looking_key(key: str) -> bool:
    words = key_words(key)
    if "webhook" in words and words[-1] in ("url", "uri"):
        return True  # a webhook URL is itself the credential (Slack, Teams: the token is in the path)
    if not words or words[-1] in REFERENCE_SUFFIXES or words[0] == "existing":
        return False
    joined = ["".join(words[i : i + 2]) for i in range(len(words) - 1)]
    if SECRET_WORDS & (set(words) | set(joined)):
        return True
    if words[-1] == "key":
        return len(words) == 1 or words[-2] not in NON_SECRET_KEY_QUALIFIERS
    return False


def secret_looking_value(value: Any) -> str | None:
    """What credential a string contains by its shape, or None."""
    if not isinstance(value, str):
        return None
    for match in CREDENTIAL_SHAPES.finditer(value):
        name = match.lastgroup
        if name == "url" and match.group("pw").startswith("$"):
            continue  # `$(DB_PASSWORD)` / `${VAR}` are references
        if name is not None:
            return SHAPE_NAMES[name]
    return None


def _holds_a_value(value: str) -> bool:
    stripped = value.strip().strip("'\"")
    return stripped.lower() not in NOT_A_VALUE and not REFERENCE_VALUE.match(stripped)


def _literal(value: str) -> bool:
    """A literal value (`hunter2`, `"hunter2"`), not an expression of a script (`b64encode(...)`, `env["X"]`)."""
    return LITERAL.match(value.strip().rstrip(";")) is not None


def embedded_assignments(text: str) -> Iterator[tuple[str, str]]:
    """`(key, value)` of the credential-looking assignments inside a string (config files, scripts, flags)."""
    if "=" not in text and ":" not in text:
        return
    for match in ASSIGNMENT.finditer(text):
        key, value = match.group("key"), match.group("value")
        if secret_looking_key(key) and _holds_a_value(value) and _literal(value):
            yield key, value


@dataclass(frozen=True)
class Finding:
    path: str
    what: str  # "is named like a credential (...)", "contains a PEM private key", ...
    secret: bool  # the value was marked secret


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    plain = re.fullmatch(r"[A-Za-z_][\w-]*", key) is not None
    return (f"{parent}.{key}" if parent else key) if plain else f"{parent}[{key!r}]"


def _string_findings(path: str, value: str, key: str | None) -> Iterator[Finding]:
    if key is not None and secret_looking_key(key) and _holds_a_value(value):
        yield Finding(path, f"is named like a credential ({key!r})", is_secret(value))
        return
    shape = secret_looking_value(value)
    if shape:
        yield Finding(path, f"contains {shape}", is_secret(value))
        return
    for inner_key, _ in embedded_assignments(value):
        yield Finding(path, f"sets {inner_key} (named like a credential) in its text", is_secret(value))
        return


def _known_str(mapping: Mapping[str, Any], key: str) -> str | None:
    try:
        value = mapping.get(key)
    except UnknownValueError:
        return None
    return value if isinstance(value, str) else None


def _names_a_secret(mapping: Mapping[str, Any]) -> bool:
    return any(_known_str(mapping, k) is not None for k in ("name", "secretName"))


def _selects_an_entry(key: str, value: str) -> bool:
    words = key_words(key)
    return bool(words) and "key" in (words[0], words[-1]) and SECRET_ENTRY_NAME.match(value) is not None


def findings(
    value: Any, path: str = "", key: str | None = None, skip: frozenset[str] = frozenset()
) -> Iterator[Finding]:
    """Every credential-looking string under `value` (known values only), with its path; `skip` names
    top-level keys to leave out."""
    if isinstance(value, str):
        yield from _string_findings(path, value, key)
        return
    if isinstance(value, Mapping):
        names_a_secret = _names_a_secret(value)
        pair_name = _known_str(value, "name") if "value" in value else None
        for k, v in known_items(value):
            if k in skip:
                continue
            sub = _path(path, k)
            if isinstance(v, str):
                if k == "value" and pair_name is not None:
                    yield from _string_findings(sub, v, pair_name)  # {name: DB_PASSWORD, value: ...}
                    continue
                if k == "key" or (names_a_secret and _selects_an_entry(str(k), v)):
                    yield from _string_findings(sub, v, None)  # a selector (tolerations, secretKeyRef): shape only
                    continue
            yield from findings(v, sub, str(k))
        return
    for i, v in known_items(value):
        yield from findings(v, _path(path, i), key)


def _kubernetes_object(resource_type: str) -> str | None:
    """`group:Kind` of a Kubernetes object the provider creates as such (not a Helm release or chart)."""
    gk = group_kind(resource_type)
    return None if gk is None or gk.startswith("helm.sh:") else gk


# --- ConfigMaps ---------------------------------------------------------------------------------------
def validate_configmap_no_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if group_kind(args.resource_type) != "core:ConfigMap":
        return
    label = f"ConfigMap {k8s_name(args.props, args.name)}"
    for section in ("data", "binaryData"):
        entries = args.props.get(section)
        if not isinstance(entries, Mapping):
            continue
        for key, value in known_items(entries):
            if secret_looking_key(str(key)):
                report(
                    f"{label}: key {key!r} looks like a secret. Move it to a Kubernetes Secret (from a Pulumi secret) "
                    "and reference it with env[].valueFrom.secretKeyRef or a secret volume.",
                    None,
                )
                continue
            for finding in _string_findings(f"{section}.{key}", value, None) if isinstance(value, str) else ():
                report(
                    f"{label}: the value of {key!r} {finding.what}. Move the secret part to a Kubernetes Secret.",
                    None,
                )


# --- other Kubernetes objects ------------------------------------------------------------------------
# Kubernetes objects whose content is checked by a policy of their own, or is a credential store.
K8S_OWN_POLICY = ("core:ConfigMap", "core:Secret")


def validate_k8s_objects_no_credentials(args: ResourceValidationArgs, report: ReportViolation) -> None:
    gk = _kubernetes_object(args.resource_type)
    if gk is None or gk in K8S_OWN_POLICY:
        return
    label = f"{kind(args.resource_type)} {k8s_name(args.props, args.name)}"
    for finding in findings(args.props):
        report(
            f"{label}: {finding.path} {finding.what}; the object is stored in plaintext in the cluster"
            f"{' (marking it secret in Pulumi does not change that)' if finding.secret else ''}. Move the value to a "
            "Kubernetes Secret and reference it (env[].valueFrom.secretKeyRef, envFrom[].secretRef, a secret volume).",
            None,
        )


# --- everything else: credentials only as Pulumi secrets ----------------------------------------------
# Properties that a dedicated policy checks (so one mistake is reported once), or that are identifiers.
OWN_POLICY_FIELDS: dict[str, frozenset[str]] = {
    "aws:rds/instance:Instance": frozenset({"password", "passwordWo"}),
    "aws:rds/cluster:Cluster": frozenset({"masterPassword", "masterPasswordWo"}),
}
IDENTIFIERS = frozenset({"id", "urn"})


def validate_credentials_marked_secret(args: ResourceValidationArgs, report: ReportViolation) -> None:
    gk = _kubernetes_object(args.resource_type)
    if gk is not None and gk != "core:Secret":
        return  # Kubernetes objects: validate_k8s_objects_no_credentials / validate_configmap_no_secrets
    skip = OWN_POLICY_FIELDS.get(args.resource_type, frozenset()) | IDENTIFIERS
    label = f"{kind(args.resource_type)} {args.name!r}"
    fix = "Pass it as a secret: pulumi.Output.secret(...) or config.require_secret(...)."
    if gk == "core:Secret":  # everything a Secret holds is secret, whatever its name or shape
        label = f"Secret {k8s_name(args.props, args.name)}"
        skip |= SECRET_DATA
        for section in SECRET_DATA:
            for key, value in known_items(args.props.get(section)):
                if isinstance(value, str) and not is_secret(value):
                    report(
                        f"{label}: {section}.{key} is not a Pulumi secret, so it is stored in plaintext in the "
                        f"state and shown in previews. {fix}",
                        None,
                    )
    for finding in findings(args.props, skip=skip):
        if not finding.secret:
            report(
                f"{label}: {finding.path} {finding.what} but is not a Pulumi secret, so it is stored in plaintext "
                f"in the state and shown in previews. {fix}",
                None,
            )


SECRET_DATA = frozenset({"data", "stringData"})
