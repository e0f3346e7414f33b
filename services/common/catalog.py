"""The model catalog: every model the platform trains and serves, and the resource profiles they run on.

One definition for everyone. The stack settings (`stacks/`) validate the `models` and `profiles` keys of a
stack file with these models; the Pulumi program renders one serving deployment per entry and writes the
catalog (`Catalog.for_airflow`) into the ConfigMap that every Airflow component mounts; the DAG factory
(`dags/`) generates one training DAG per entry from that same JSON; `make demo` builds it for local runs.

A catalog entry (keys as in `Pulumi.<stack>.yaml`, camelCase):

    models:
      iris-classifier:
        training:
          source: {repo: <git URL; default: airflow.gitRepo>, ref: <default: airflow.gitBranch>, subdir: examples/iris}
          entrypoint: iris_model.train:train        # package.module:function, or a command list
          profile: small
          params: {C: 1.0}                          # defaults; a run may override them
          dataset: s3://<bucket>/datasets/iris.csv  # optional; inside the artifact bucket: granted automatically
          schedule: "0 3 * * 1"                     # cron, or null for on demand only
        gate: {metric: test_accuracy, direction: max, threshold: 0.9, minImprovement: 0.0}
        serving: {aliases: [champion, challenger], routing: {mode: fixed, alias: champion}, profile: small,
                  workers: 2, minReplicas: 1, maxReplicas: 3, host: iris.models.<domain>,
                  auth: {mode: apiKey, keys: [key-1]},          # none | apiKey | oidc; default: apiKey in prod
                  rateLimit: {average: 50, burst: 100, by: clientIp},   # per client, at the ingress
                  maxInFlight: 64, publicDocs: false}           # per process; /docs default: off in prod

Only pydantic is imported here: the Pulumi program, the serving service and the DAGs all load this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from services.common import git_access, serving_auth
from services.common import serving_rules as rules

# Registered-model names: what MLflow accepts and what survives URLs, file names and Kubernetes labels.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# The longest slug: leaves room for the longest derived name (`train_<slug>` DAG ids, `model-<slug>` objects).
MAX_SLUG = 40
GPU_RESOURCE = "nvidia.com/gpu"
_ENTRYPOINT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_METRIC = re.compile(r"^[A-Za-z0-9_./ -]{1,250}$")

ParamValue = str | int | float | bool | None


class CatalogError(ValueError):
    """An invalid catalog. `problems` holds (key path, message) pairs, e.g. ("models.iris.gate.metric", ...)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _quantity(value: str) -> str:
    if not rules.QUANTITY.match(str(value)):
        raise ValueError(f"must be a Kubernetes quantity such as 500m, 2 or 4Gi; got {value!r}")
    return str(value)


Quantity = Annotated[str, Field(min_length=1)]


# --- profiles -------------------------------------------------------------------------------------
class Toleration(_Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds")

    def to_k8s(self) -> dict[str, Any]:
        """The toleration as the Kubernetes API spells it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Resources(_Strict):
    cpu: Quantity
    memory: Quantity

    @field_validator("cpu", "memory")
    @classmethod
    def _is_quantity(cls, value: str) -> str:
        return _quantity(value)


IMAGE_KINDS = ("training", "serving")  # the images of a profile: its training pods' and its serving pods'


class ImageBuild(_Strict):
    """A profile image this repository builds: `make images` and the images workflow build `dockerfile` (at
    `target`, with `context` as the build context, both relative to the repository root), push it as the image
    `image` (default `<profile>-<kind>`) under `images.registry` and record its reference in `images.profiles`
    of the stack under that name. Profiles that name the same image share it (e.g. a copy of `gpu` with another
    priority class runs the `gpu` profile's images)."""

    dockerfile: str = Field(pattern=r"^[A-Za-z0-9_./-]+$", description="path of the Dockerfile in the repository")
    target: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="build stage")
    context: str = Field(default=".", pattern=r"^[A-Za-z0-9_./-]+$", description="build context folder")
    image: str | None = Field(
        default=None, pattern=r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$", description="default <profile>-<kind>"
    )

    def name(self, profile: str, kind: str) -> str:
        """The image's name: `image`, else `<profile>-<kind>` of the profile image it is."""
        return self.image or f"{profile}-{kind}"

    @field_validator("dockerfile", "context")
    @classmethod
    def _inside(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"must be a relative path inside the repository; got {value!r}")
        return value


def _image_form(value: Any) -> str:
    return "build" if isinstance(value, (Mapping, ImageBuild)) else "reference"


# A reference (`<repository>:<tag>`, `...@sha256:...`) or a build (`{dockerfile, target, context}`); the tag names
# the form in error locations, so a mistake is reported for the form that was written only.
ProfileImage = Annotated[
    Annotated[str, Tag("reference")] | Annotated[ImageBuild, Tag("build")], Discriminator(_image_form)
]


class ProfileImages(_Strict):
    """Images of one profile; unset = the platform's own (the Airflow image trains, the serving image serves).

    Each is a ready image reference, or an `ImageBuild` (`{dockerfile, target, context}`) that the platform's
    image tooling builds; the stack settings replace the latter by the reference recorded for it."""

    training: ProfileImage | None = None
    serving: ProfileImage | None = None

    def builds(self) -> dict[str, ImageBuild]:
        """The images of this profile built from a Dockerfile, by kind (`training`, `serving`)."""
        return {kind: value for kind in IMAGE_KINDS if isinstance(value := getattr(self, kind), ImageBuild)}


class Profile(_Strict):
    """Resources of the pods of one kind of model: BOTH its training pod and its serving pods."""

    images: ProfileImages = ProfileImages()
    requests: Resources
    limits: Resources
    gpus: int = Field(default=0, ge=0, le=16)
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: tuple[Toleration, ...] = ()
    priority_class_name: str | None = Field(default=None, alias="priorityClassName")

    @model_validator(mode="after")
    def _gpu_placement(self) -> Profile:
        if self.gpus and not self.node_selector and not self.tolerations:
            raise ValueError(
                "a GPU profile needs GPU node selection: set nodeSelector (e.g. nvidia.com/gpu.present: 'true') "
                "or tolerations for the GPU nodes' taint"
            )
        if rules.quantity_bytes(self.requests.memory) > rules.quantity_bytes(self.limits.memory):
            raise ValueError(f"requests.memory {self.requests.memory} is above limits.memory {self.limits.memory}")
        return self

    def k8s_resources(self) -> dict[str, dict[str, str]]:
        """`resources` of a container on this profile: requests and limits, with the GPU count in both."""
        requests = {"cpu": self.requests.cpu, "memory": self.requests.memory}
        limits = {"cpu": self.limits.cpu, "memory": self.limits.memory}
        if self.gpus:
            requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(self.gpus)
        return {"requests": requests, "limits": limits}

    def k8s_tolerations(self) -> list[dict[str, Any]]:
        return [t.to_k8s() for t in self.tolerations]


GPU_DOCKERFILE = "profiles/gpu/Dockerfile"
DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    # `small` holds the default serving workers (services.common.serving_rules.min_memory_bytes).
    "small": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "medium": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    "gpu": {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"cpu": "4", "memory": "16Gi"},
        "gpus": 1,
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        # CUDA images of the platform's runtimes (profiles/gpu/Dockerfile), built by `make images`
        "images": {
            "training": {"dockerfile": GPU_DOCKERFILE, "target": "training", "image": "gpu-training"},
            "serving": {"dockerfile": GPU_DOCKERFILE, "target": "serving", "image": "gpu-serving"},
        },
    },
}


# --- models ---------------------------------------------------------------------------------------
class Source(_Strict):
    """Where the training code is: a git repository, a ref and a folder in it, and the name of the read-only
    credentials that fetch it (`services.common.git_access`). A URL never carries a password or token: those are
    secret stack settings (`airflow.gitCredentials.<name>.token`) that `credentials` names."""

    repo: str | None = Field(default=None, pattern=r"^(https://|ssh://|git@)", description="default: airflow.gitRepo")
    ref: str | None = Field(default=None, min_length=1, description="branch, tag or commit; default: airflow.gitBranch")
    subdir: str = Field(default="", pattern=r"^[A-Za-z0-9_./-]*$", description="folder of the code in the repository")
    credentials: str | None = Field(
        default=None,
        pattern=git_access.CREDENTIALS_NAME_PATTERN,
        description="airflow.gitCredentials.<name> that fetch repo; default: airflow.gitSshKey for SSH URLs",
    )

    @field_validator("subdir")
    @classmethod
    def _inside(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"must be a relative folder inside the repository; got {value!r}")
        return value

    @field_validator("repo")
    @classmethod
    def _no_secret_in_url(cls, value: str | None) -> str | None:
        problem = None if value is None else git_access.url_secret_problem(value)
        if problem is not None:
            raise ValueError(f"{problem}, and set training.source.credentials to <name>")
        return value

    @model_validator(mode="after")
    def _fetched(self) -> Source:
        if self.credentials is not None and not self.fetched:
            raise ValueError(
                "credentials goes with repo or ref: without them the platform's own checkout is used (nothing is "
                "fetched)"
            )
        return self

    @property
    def fetched(self) -> bool:
        """Whether a run fetches the code (repo or ref set) rather than using the platform's own checkout."""
        return self.repo is not None or self.ref is not None


class Training(_Strict):
    source: Source = Source()
    entrypoint: str | tuple[str, ...] = Field(description="package.module:function, or a command as a list")
    profile: str = "small"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    dataset: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9+.-]*://\S+$")
    schedule: str | None = None
    timeout_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60, alias="timeoutMinutes")
    alias: rules.Alias | None = Field(
        default=None,
        description="alias a candidate that passes the gate is registered under (gated against the champion, the "
        "first serving alias, either way); default: the champion itself. `challenger`: candidates await a rollout",
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str):
            if not _ENTRYPOINT.match(value):
                raise ValueError(f"must be package.module:function or a command list; got {value!r}")
        elif not value or not all(isinstance(part, str) and part for part in value):
            raise ValueError("a command must be a non-empty list of non-empty strings")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            problem = cron_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @property
    def is_command(self) -> bool:
        return not isinstance(self.entrypoint, str)


class Gate(_Strict):
    metric: str = Field(description="a metric the training run logs")
    direction: Literal["max", "min"] = "max"
    threshold: float | None = None
    min_improvement: float | None = Field(
        default=None, alias="minImprovement", description="unset = no comparison with the current champion"
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not _METRIC.match(value):
            raise ValueError(f"must be an MLflow metric name; got {value!r}")
        return value

    def better(self, candidate: float, reference: float) -> float:
        """How much better `candidate` is than `reference` in the gate's direction (negative: worse)."""
        return candidate - reference if self.direction == "max" else reference - candidate

    def passes_threshold(self, value: float) -> bool:
        if self.threshold is None:
            return True
        return value >= self.threshold if self.direction == "max" else value <= self.threshold


# --- serving: who may call, how often -------------------------------------------------------------
AUTH_MODES = serving_auth.AUTH_MODES
KEY_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"
KEY_HASH_PATTERN = r"^(sha256:)?[0-9a-f]{64}$"
_OIDC_FIELDS = ("issuer", "audience", "jwks_url")


class ServingAuth(_Strict):
    """Who may call the model's prediction endpoints (the modes of `services.common.serving_auth`).

    `mode` unset = the environment's default (`for_environment`): apiKey in prod, none elsewhere. With apiKey the
    program generates one key per name in `keys` (exported as a secret stack output) and accepts, besides them,
    the SHA-256 hashes in `keyHashes` (keys issued elsewhere); only hashes reach the cluster. Rotation: add a key
    name (or hash), hand out the new key, remove the old name: both are accepted in between.
    `anonymousReason` is the written justification a prod model needs to run with mode none."""

    mode: Literal["none", "apiKey", "oidc"] | None = None
    issuer: str | None = Field(default=None, description="oidc: the token issuer (https URL)")
    audience: str | None = Field(default=None, description="oidc: the audience tokens must be for")
    jwks_url: str | None = Field(default=None, alias="jwksUrl", description="oidc: default from the issuer")
    keys: tuple[Annotated[str, Field(pattern=KEY_NAME_PATTERN)], ...] = Field(
        default=("key-1",), description="apiKey: names of the keys the stack generates"
    )
    key_hashes: tuple[Annotated[str, Field(pattern=KEY_HASH_PATTERN)], ...] = Field(
        default=(), alias="keyHashes", description="apiKey: SHA-256 of keys issued outside the stack"
    )
    anonymous_reason: str | None = Field(
        default=None, alias="anonymousReason", min_length=10, description="why a prod model takes anonymous calls"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ServingAuth:
        given = [f for f in _OIDC_FIELDS if getattr(self, f) is not None]
        if self.mode == "oidc":
            self.service_config(None)  # issuer and audience required, URLs checked
        elif given:
            raise ValueError(f"issuer, audience and jwksUrl go with mode oidc (mode is {self.mode or 'unset'})")
        if self.anonymous_reason is not None and self.mode != "none":
            raise ValueError("anonymousReason goes with mode none")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("keys must be distinct names")
        if self.mode == "apiKey" and not self.keys and not self.key_hashes:
            raise ValueError("mode apiKey needs at least one key name in keys or one hash in keyHashes")
        return self

    def service_config(self, keys_secret: str | None) -> serving_auth.AuthConfig:
        """The setting as the serving service reads it (`MLOPS_SERVING_AUTH`); mode unset counts as none."""
        if self.mode == "apiKey":
            return serving_auth.ApiKeyAuth(keysSecret=keys_secret)
        if self.mode == "oidc":
            raw = {"mode": "oidc", "issuer": self.issuer, "audience": self.audience, "jwksUrl": self.jwks_url}
            return serving_auth.parse_auth({k: v for k, v in raw.items() if v is not None})
        return serving_auth.NoAuth()

    def hashes(self) -> tuple[str, ...]:
        """`keyHashes` as bare lowercase hex."""
        return tuple(h.removeprefix("sha256:") for h in self.key_hashes)


class RateLimit(_Strict):
    """Per-client rate limit at the ingress (a Traefik rateLimit middleware): `average` requests per `period`
    seconds with bursts of `burst`; beyond, 429 with Retry-After. Clients are told apart by their IP address
    (`by: clientIp`) or by their `Authorization` header (`by: authorization`: one budget per key or token, for
    clients behind one NAT; requests without the header share one budget)."""

    average: int = Field(default=100, ge=1, le=1_000_000)
    period: int = Field(default=1, ge=1, le=3600, description="seconds")
    burst: int = Field(default=200, ge=1, le=1_000_000)
    by: Literal["clientIp", "authorization"] = "clientIp"


def _default_routing() -> rules.RoutingConfig:
    return rules.parse_routing({"mode": "fixed", "alias": rules.DEFAULT_ALIASES[0]})


class Serving(_Strict):
    aliases: tuple[rules.Alias, ...] = rules.DEFAULT_ALIASES
    routing: rules.RoutingConfig = Field(default_factory=_default_routing)
    profile: str = "small"
    workers: int = Field(default=rules.DEFAULT_WORKERS, ge=1, le=32)
    min_replicas: int = Field(default=1, ge=1, le=100, alias="minReplicas")
    max_replicas: int = Field(default=2, ge=1, le=500, alias="maxReplicas")
    host: str | None = Field(default=None, description="default <model>.models.<ingress.domain>")
    auth: ServingAuth = ServingAuth()
    rate_limit: RateLimit = Field(default_factory=RateLimit, alias="rateLimit")
    max_in_flight: int | None = Field(
        default=None, ge=1, le=100_000, alias="maxInFlight", description="per process; default: the service's"
    )
    public_docs: bool | None = Field(
        default=None, alias="publicDocs", description="/docs and /openapi.json; default: true, false in prod"
    )
    shadow_agreement: rules.Agreement = Field(
        default_factory=rules.Agreement,
        alias="shadowAgreement",
        description="when a shadow's answer agrees with the primary's: exact, or absolute/relative within tolerance",
    )

    def for_environment(self, environment: str) -> Serving:
        """This entry with the environment's defaults filled in: prod authenticates (apiKey) and hides the API
        document; other environments take anonymous calls and publish it."""
        prod = environment == "prod"
        auth = self.auth
        if auth.mode is None:
            auth = auth.model_copy(update={"mode": "apiKey" if prod else "none"})
        docs = self.public_docs if self.public_docs is not None else not prod
        return self.model_copy(update={"auth": auth, "public_docs": docs})

    @model_validator(mode="after")
    def _consistent(self) -> Serving:
        if not self.aliases:
            raise ValueError("aliases must name at least one alias")
        missing = [a for a in self.routing.aliases() if a not in self.aliases]
        if missing:
            raise ValueError(f"routing uses aliases {missing} that aliases does not load")
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        return self


class ModelSpec(_Strict):
    training: Training
    gate: Gate
    serving: Serving = Serving()

    @model_validator(mode="after")
    def _training_alias_is_served(self) -> ModelSpec:
        alias = self.training.alias
        if alias is not None and alias not in self.serving.aliases:
            raise ValueError(
                f"training.alias: {alias!r} is not an alias the model's serving loads ({list(self.serving.aliases)})"
            )
        return self


class Catalog(_Strict):
    """The validated catalog: models by registered name, profiles by name."""

    models: dict[str, ModelSpec]
    profiles: dict[str, Profile]

    def slug(self, model: str) -> str:
        return slug(model)

    def for_environment(self, environment: str) -> Catalog:
        """The catalog with every model's serving defaults of `environment` filled in (`Serving.for_environment`)."""
        models = {
            name: spec.model_copy(update={"serving": spec.serving.for_environment(environment)})
            for name, spec in self.models.items()
        }
        return self.model_copy(update={"models": models})

    def for_airflow(self, **endpoints: Mapping[str, str]) -> dict[str, Any]:
        """The catalog as the DAGs receive it (JSON-ready): every model with its settings, the profile it
        trains on, and per model any endpoint given (e.g. serving_url={model: url})."""
        out: dict[str, Any] = {"version": 1, "models": {}, "profiles": {}}
        for name, spec in sorted(self.models.items()):
            entry = spec.model_dump(mode="json", by_alias=True)
            entry["names"] = names(name)
            for key, per_model in sorted(endpoints.items()):
                if name in per_model:
                    entry[key] = per_model[name]
            out["models"][name] = entry
        for name, profile in sorted(self.profiles.items()):
            out["profiles"][name] = profile.model_dump(mode="json", by_alias=True, exclude_none=True)
        return out


# --- names ----------------------------------------------------------------------------------------
def slug(model: str) -> str:
    """The model's name as a DNS label: lower case, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")


def names(model: str) -> dict[str, str]:
    """Every name derived from a model: Kubernetes objects, the DAG id, the MLflow experiment."""
    s = slug(model)
    return {
        "slug": s,
        "k8s": f"model-{s}",  # Deployment, Service, HPA, PDB, NetworkPolicy, Ingress of its serving
        "dag_id": f"train_{s.replace('-', '_')}",
        "rollback_dag_id": f"rollback_{s.replace('-', '_')}",
        "experiment": f"mlops/{model}",
    }


# --- cron -----------------------------------------------------------------------------------------
_CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    ),
    ("day of week", 0, 7, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
)


def cron_problem(expression: str) -> str | None:
    """None when `expression` is a five-field cron expression (or a preset such as @daily), else why not."""
    text = expression.strip()
    if text.lower() in _CRON_PRESETS:
        return None
    parts = text.split()
    if len(parts) != 5:
        return f"must be a cron expression with 5 fields (minute hour day month weekday) or @daily etc.; got {text!r}"
    for part, (label, low, high, named) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            problem = _cron_item(item.lower(), low, high, named)
            if problem:
                return f"is not a valid cron expression: {label} field {part!r} {problem}"
    return None


def _cron_item(item: str, low: int, high: int, named: Mapping[str, int]) -> str | None:
    base, _, step = item.partition("/")
    if step and (not step.isdigit() or int(step) < 1):
        return f"has a bad step {step!r}"
    if base == "*":
        return None
    bounds = base.split("-")
    if len(bounds) > 2:
        return f"has a bad range {base!r}"
    values = []
    for bound in bounds:
        value = named.get(bound) if bound in named else (int(bound) if bound.isdigit() else None)
        if value is None or not low <= value <= high:
            return f"has {bound!r} outside {low}-{high}"
        values.append(value)
    if len(values) == 2 and values[0] > values[1]:
        return f"has a descending range {base!r}"
    return None


# --- parsing --------------------------------------------------------------------------------------
def parse_catalog(models: Mapping[str, Any], profiles: Mapping[str, Any] | None = None) -> Catalog:
    """Validate raw `models` and `profiles` objects (as a stack file holds them) into a Catalog.

    Raises CatalogError whose problems name the key path of each mistake, e.g.
    ("models.iris.gate.metric", "Field required") or ("models.b.serving.profile", "unknown profile 'huge' ...").
    """
    problems: list[tuple[str, str]] = []
    parsed_profiles = _parse_map("profiles", DEFAULT_PROFILES if profiles is None else profiles, Profile, problems)
    parsed_models = _parse_map("models", models, ModelSpec, problems)
    for name in parsed_models:
        if not re.match(MODEL_NAME_PATTERN, name):
            problems.append((f"models.{name}", f"is not a valid registered-model name ({MODEL_NAME_PATTERN})"))
    if not isinstance(models, Mapping) or not models:
        problems.append(("models", "must name at least one model"))
    _cross_check(parsed_models, parsed_profiles, problems)
    if problems:
        raise CatalogError(problems)
    return Catalog(models=parsed_models, profiles=parsed_profiles)


def _parse_map(root: str, raw: Any, model: type[BaseModel], problems: list[tuple[str, str]]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        problems.append((root, "must be an object keyed by name"))
        return {}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            out[str(name)] = model.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p))
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.append((f"{root}.{name}" + (f".{loc}" if loc else ""), msg))
    return out


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the chosen union member into the location (`routing.fixed.alias`, `entrypoint.str`)
    return part in ("fixed", "ab", "canary", "blue-green", "shadow", "str", "tuple[str, ...]", "reference", "build")


def _cross_check(models: dict[str, ModelSpec], profiles: dict[str, Profile], problems: list[tuple[str, str]]) -> None:
    known = ", ".join(sorted(profiles)) or "none"
    by_slug: dict[str, str] = {}
    for name, spec in models.items():
        s = slug(name)
        if not s or not s[0].isalpha():
            problems.append((f"models.{name}", f"yields the Kubernetes name {s!r}, which must start with a letter"))
        elif len(s) > MAX_SLUG:
            problems.append((f"models.{name}", f"is too long for Kubernetes names (at most {MAX_SLUG} characters)"))
        if s in by_slug:
            problems.append((f"models.{name}", f"yields the same Kubernetes name {s!r} as models.{by_slug[s]}"))
        by_slug.setdefault(s, name)
        for part, profile in (("training", spec.training.profile), ("serving", spec.serving.profile)):
            if profile not in profiles:
                problems.append((f"models.{name}.{part}.profile", f"unknown profile {profile!r}; profiles: {known}"))
        serving_profile = profiles.get(spec.serving.profile)
        if serving_profile is not None:
            need = rules.min_memory_bytes(spec.serving.workers)
            if rules.quantity_bytes(serving_profile.limits.memory) < need:
                problems.append(
                    (
                        f"models.{name}.serving.workers",
                        f"is {spec.serving.workers}: that many workers need a memory limit of at least "
                        f"{need // 2**20}Mi but profile {spec.serving.profile!r} has {serving_profile.limits.memory}; "
                        f"lower serving.workers or raise profiles.{spec.serving.profile}.limits.memory",
                    )
                )
