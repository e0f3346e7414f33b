"""Loading a stack's configuration: every declared setting read, defaulted, parsed and validated, the model
catalog built, the cross-checks run; every problem reported at once (`SettingsError`)."""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from services.common import git_access
from services.common.catalog import (
    DEFAULT_PROFILES,
    IMAGE_KINDS,
    Catalog,
    CatalogError,
    ImageBuild,
    Profile,
    parse_catalog,
)
from stacks.settings.airflow import GIT_CREDENTIAL_FIELDS, GIT_CREDENTIALS_PREFIX, AirflowSettings, GitCredentials
from stacks.settings.alerts import AlertSettings
from stacks.settings.api import ApiSettings
from stacks.settings.artifacts import ArtifactSettings
from stacks.settings.charts import ChartSettings
from stacks.settings.checks import cross_checks
from stacks.settings.database import DatabaseSettings
from stacks.settings.engine import (
    ENVIRONMENTS,
    PROJECT,
    Meta,
    Secret,
    SettingsError,
    parse_raw,
    parse_with,
    quote,
    validate,
)
from stacks.settings.images import DEFAULT_REGISTRY, ImageRef, ImagesSettings, ProfileBuild, profile_builds
from stacks.settings.ingress import IngressSettings
from stacks.settings.kubernetes import KubernetesSettings
from stacks.settings.mlflow import MlflowSettings
from stacks.settings.network import NetworkSettings
from stacks.settings.nfs import NfsSettings
from stacks.settings.observability import ObservabilitySettings
from stacks.settings.retention import RetentionSettings
from stacks.settings.serving import ServingSettings
from stacks.settings.stack import StackSettings

# --- loading ----------------------------------------------------------------------------------------
_GROUPS: dict[str, type] = {
    "": StackSettings,
    "kubernetes": KubernetesSettings,
    "ingress": IngressSettings,
    "artifacts": ArtifactSettings,
    "database": DatabaseSettings,
    "nfs": NfsSettings,
    "mlflow": MlflowSettings,
    "airflow": AirflowSettings,
    "serving": ServingSettings,
    "api": ApiSettings,
    "alerts": AlertSettings,
    "charts": ChartSettings,
    "images": ImagesSettings,
    "retention": RetentionSettings,
    "network": NetworkSettings,
    "observability": ObservabilitySettings,
}
_GROUP_FIELDS = {
    "kubernetes",
    "ingress",
    "artifacts",
    "database",
    "nfs",
    "mlflow",
    "airflow",
    "serving",
    "api",
    "alerts",
    "charts",
    "images",
    "retention",
    "network",
    "observability",
}


def declared() -> Iterator[tuple[str, Meta, Any]]:
    """Every declared setting: (full key without namespace, metadata, annotation)."""
    for cls in _GROUPS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta = f.metadata.get("setting")
            if meta is not None:
                yield meta.key, meta, hints[f.name]


# Keys of the single-model platform, refused with the key that took their place.
RETIRED_KEYS: dict[str, str] = {
    "serving.modelName": "models.<name> (every model of the catalog is served under its own name)",
    "serving.aliases": "models.<name>.serving.aliases",
    "serving.routing": "models.<name>.serving.routing",
    "serving.profile": "models.<name>.serving.profile",
    "serving.profiles": "profiles (shared by the training and the serving pods)",
    "serving.minReplicas": "models.<name>.serving.minReplicas",
    "serving.maxReplicas": "models.<name>.serving.maxReplicas",
    "serving.workers": "models.<name>.serving.workers",
}


def _raw_catalog(top: Mapping[str, Any], source: str, problems: list[str]) -> Catalog | None:
    """`models` and `profiles` (the shipped profiles, with the stack's added or replaced) as one Catalog, profile
    images as written; each problem names its key path, e.g. `mlops-platform:models.iris.gate.metric Field
    required`. None when the catalog cannot be built."""
    if "models" not in top or "profiles" not in top:
        return None  # already reported: missing or not an object
    try:
        return parse_catalog(top["models"], {**DEFAULT_PROFILES, **top["profiles"]})
    except CatalogError as exc:
        problems.extend(f"{source}: {PROJECT}:{path} {message}" for path, message in exc.problems)
        return None


def _catalog(
    stack: str, top: Mapping[str, Any], images: Mapping[str, Any], source: str, problems: list[str]
) -> tuple[Catalog, dict[str, ProfileBuild]] | None:
    """The stack's Catalog with every profile image resolved to a reference: a reference under images.registry
    like the platform's own, a Dockerfile-built image to its reference in images.profiles. A built image that a
    model's pods run must be recorded there; one no pod runs is left unset. Also returns the built images
    (`profile_builds`). None when the catalog cannot be built."""
    catalog = _raw_catalog(top, source, problems)
    if catalog is None:
        return None
    registry = images.get("registry", DEFAULT_REGISTRY)
    recorded = images.get("profiles", {})
    builds = profile_builds(catalog, source, problems)
    built = {use: build for build in builds.values() for use in build.uses}
    resolved: dict[str, Profile] = {}
    for name, profile in catalog.profiles.items():
        refs: dict[str, str | None] = {}
        for kind in IMAGE_KINDS:
            value = getattr(profile.images, kind)
            key = f"{PROJECT}:profiles.{name}.images.{kind}"
            if isinstance(value, ImageBuild):
                build = built.get((name, kind))
                if build is None:
                    continue  # reported by profile_builds
                value = recorded.get(build.name)
                if value is None and build.used_by:
                    problems.append(
                        f"{source}: {key} is built from {build.build.dockerfile} but {PROJECT}:images.profiles has no "
                        f"{build.name} (the pods of {', '.join(build.used_by)} run it): build it and record its "
                        f"reference with `make images STACK={stack}`"
                    )
                    continue
                refs[kind] = None if value is None else ImageRef.parse(value, registry).reference
                continue
            if value is None:
                continue
            try:
                refs[kind] = ImageRef.parse(value, registry).reference
            except ValueError as exc:
                problems.append(f"{source}: {key} {exc}; got {quote(value)}")
        resolved[name] = profile.model_copy(update={"images": profile.images.model_copy(update=refs)})
    return catalog.model_copy(update={"profiles": resolved}), builds


def stack_profile_builds(stack: str, config: Mapping[str, Any], source: str | None = None) -> dict[str, ProfileBuild]:
    """The profile images a stack's configuration builds from Dockerfiles (what `make images` and the images
    workflow build besides the platform's), found before their references are recorded. Raises SettingsError
    naming the key when `models` or `profiles` is invalid."""
    source = source or f"Pulumi.{stack}.yaml"
    problems: list[str] = []
    top: dict[str, Any] = {}
    hints = typing.get_type_hints(StackSettings)
    for f in dataclasses.fields(StackSettings):
        meta: Meta | None = f.metadata.get("setting")
        if meta is None or meta.key not in ("models", "profiles"):
            continue
        raw = config.get(f"{PROJECT}:{meta.key}")
        value, problem = (meta.default, None) if raw is None else parse_raw(raw, hints[f.name])
        if problem is not None or value is None:
            problems.append(f"{source}: {PROJECT}:{meta.key} {problem or 'is required'}")
        else:
            top[meta.key] = value
    catalog = _raw_catalog(top, source, problems)
    builds = profile_builds(catalog, source, problems) if catalog is not None else {}
    if problems:
        raise SettingsError(problems)
    return builds


def load_settings(
    stack: str,
    config: Mapping[str, Any],
    secret_keys: frozenset[str] | set[str] = frozenset(),
    source: str | None = None,
) -> StackSettings:
    """Validate a stack's configuration (keys `mlops-platform:<key>`, other namespaces ignored).

    Raises `SettingsError` listing every problem, each naming `source` and the full key.
    """
    source = source or f"Pulumi.{stack}.yaml"
    problems: list[str] = []
    ns = f"{PROJECT}:"
    ours = {k[len(ns) :]: v for k, v in config.items() if k.startswith(ns)}
    _check_keys(ours, source, problems)

    env_raw = ours.get("environment", stack if stack in ENVIRONMENTS else None)
    environment = env_raw if env_raw in ENVIRONMENTS else "dev"

    reading = _Reading(stack, environment, ours, secret_keys, source, problems)
    groups = {cls_name: reading.group(cls) for cls_name, cls in _GROUPS.items()}
    groups["airflow"]["git_credentials"] = _git_credentials(ours, secret_keys, source, problems)

    parsed = _catalog(stack, groups[""], groups["images"], source, problems)
    if problems or parsed is None:
        raise SettingsError(problems)
    catalog, builds = parsed

    nested = {name: _GROUPS[name](**groups[name]) for name in _GROUP_FIELDS}
    settings = StackSettings(
        stack=stack,
        source=source,
        catalog=catalog.for_environment(environment),
        profile_builds=builds,
        **groups[""],
        **nested,
    )
    cross_checks(settings, problems)
    if problems:
        raise SettingsError(problems)
    return settings


def _check_keys(ours: Mapping[str, Any], source: str, problems: list[str]) -> None:
    """Retired keys (naming the key that took their place) and unknown keys (with the closest known one)."""
    ns = f"{PROJECT}:"
    known = {key for key, _, _ in declared()} | {k for k in ours if is_git_credentials_key(k)}
    for key in sorted(set(ours) & set(RETIRED_KEYS)):
        problems.append(f"{source}: {ns}{key} is no longer a setting: set {ns}{RETIRED_KEYS[key]}")
    for key in sorted(set(ours) - known - set(RETIRED_KEYS)):
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        hint = f" (did you mean {ns}{close[0]}?)" if close else ""
        problems.append(f"{source}: {ns}{key} is not a known setting{hint}")


_INVALID = object()  # a setting whose problem is already reported


@dataclasses.dataclass(frozen=True)
class _Reading:
    """One stack's configuration (`ours`: keys without the namespace) being read; problems are appended."""

    stack: str
    environment: str
    ours: Mapping[str, Any]
    secret_keys: frozenset[str] | set[str]
    source: str
    problems: list[str]

    def group(self, cls: type) -> dict[str, Any]:
        """The values of the settings of one settings class, by field name (the invalid ones left out)."""
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            meta: Meta | None = f.metadata.get("setting")
            if meta is None:
                continue
            value = self.value(meta, hints[f.name]) if meta.key in self.ours else self.default(meta)
            if value is not _INVALID:
                values[f.name] = value
        return values

    def value(self, meta: Meta, annotation: Any) -> Any:
        """A set key parsed and validated; a secret must be stored as one."""
        full = f"{PROJECT}:{meta.key}"
        raw = self.ours[meta.key]
        if meta.secret and full not in self.secret_keys:
            self.problems.append(_plaintext_secret(self.source, meta.key))
            return _INVALID
        value, problem = parse_with(meta.parse, raw) if meta.parse else parse_raw(raw, annotation)
        if problem is None and value is not None and not meta.secret:
            problem = validate(meta, value)
        if problem is not None:
            shown = "[secret]" if meta.secret else quote(raw)
            self.problems.append(f"{self.source}: {full} {problem}; got {shown}")
            return _INVALID
        return value

    def default(self, meta: Meta) -> Any:
        """An unset key's default (for the stack's environment; `environment`'s own for the stack's name)."""
        if meta.default_fn is not None:
            value = meta.default_fn(self.stack if meta.key == "environment" else self.environment)
        else:
            value = meta.default
        if value is None and meta.required:
            self.problems.append(f"{self.source}: {PROJECT}:{meta.key} is required ({meta.doc})")
            return _INVALID
        return value


def _plaintext_secret(source: str, key: str) -> str:
    return (
        f"{source}: {PROJECT}:{key} is a secret; store it with `pulumi config set --secret {key} ...` "
        "(it is in plaintext now)"
    )


def is_git_credentials_key(key: str) -> bool:
    return key == GIT_CREDENTIALS_PREFIX.rstrip(".") or key.startswith(GIT_CREDENTIALS_PREFIX)


def _git_credentials(
    ours: Mapping[str, Any], secret_keys: frozenset[str] | set[str], source: str, problems: list[str]
) -> dict[str, GitCredentials]:
    """The keys `airflow.gitCredentials.<name>.<key>` as GitCredentials by name. A secret one in plaintext, a key
    that is not one of GIT_CREDENTIAL_FIELDS and a set with neither sshKey nor token are problems."""
    values: dict[str, dict[str, Any]] = {}
    for key in sorted(k for k in ours if is_git_credentials_key(k)):
        full = f"{PROJECT}:{key}"
        name, _, part = key.removeprefix(GIT_CREDENTIALS_PREFIX).partition(".")
        if not re.match(git_access.CREDENTIALS_NAME_PATTERN, name) or part not in GIT_CREDENTIAL_FIELDS:
            close = difflib.get_close_matches(part, list(GIT_CREDENTIAL_FIELDS), n=1, cutoff=0.6)
            hint = f" (did you mean .{close[0]}?)" if close and name else ""
            problems.append(
                f"{source}: {full} is not a known setting{hint}: each git credential is its own key, "
                f"{PROJECT}:{GIT_CREDENTIALS_PREFIX}<name>.sshKey, .token or .username, <name> of lower-case letters, "
                "digits and '-' (at most 32)"
            )
            continue
        field_name, secret, _ = GIT_CREDENTIAL_FIELDS[part]
        if secret and full not in secret_keys:
            problems.append(_plaintext_secret(source, key))
            continue
        raw = ours[key]
        if not isinstance(raw, str) or not raw.strip():
            problems.append(f"{source}: {full} must be a non-empty string; got {'[secret]' if secret else quote(raw)}")
            continue
        values.setdefault(name, {})[field_name] = Secret(raw) if secret else raw
    out = {}
    for name, fields in sorted(values.items()):
        if "ssh_key" not in fields and "token" not in fields:
            problems.append(
                f"{source}: {PROJECT}:{GIT_CREDENTIALS_PREFIX}{name} has a username but neither .sshKey nor .token"
            )
            continue
        out[name] = GitCredentials(**fields)
    return out


def from_pulumi() -> StackSettings:
    """Load the settings of the running stack (inside `pulumi up`/`preview` or the mock harness)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    config: dict[str, Any] = dict(runtime_config.get_config_env())
    config.update(runtime_config.CONFIG.get())
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    return load_settings(pulumi.get_stack(), config, secret_keys)
