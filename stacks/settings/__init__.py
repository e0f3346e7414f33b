"""Typed stack settings: every configuration key the program reads, declared once.

Each key is one field of a frozen dataclass below, declared with `setting(...)`: its Pulumi key
(`mlops-platform:<key>` in `Pulumi.<stack>.yaml`), its type (the field's annotation), its default
(a value, or a function of the environment `dev`/`staging`/`prod`), its validation and its doc.
`load_settings` reads a stack's configuration, applies defaults and validates every value; every
problem is reported at once, each line naming the stack file and the key, e.g.

    Pulumi.prod.yaml: mlops-platform:database.mode must be one of rds, in-cluster; got "rdss"

Keys under the project's namespace that nothing declares are errors too, so a typo cannot pass
silently. Secret settings must be stored encrypted (`pulumi config set --secret`) and are handed to
the program as `Secret` values that never print their content.

The package, by concern: `engine` (declaring, parsing and validating one setting), one module per settings group
(`kubernetes`, `ingress`, `artifacts`, `database`, `nfs`, `mlflow`, `airflow`, `serving`, `api`, `alerts`, `charts`,
`observability`, `retention`, `network`, `images`), `stack` (`StackSettings`), `checks` (the rules across keys),
`loading` (`load_settings`) and `table` (docs/configuration.md's table). Everything public is importable from
`stacks.settings`.
"""

from __future__ import annotations

from stacks.settings.airflow import (
    GIT_CREDENTIAL_FIELDS,
    GIT_CREDENTIALS_PREFIX,
    GIT_KNOWN_HOSTS_KEY,
    AirflowSettings,
    GitCredentials,
)
from stacks.settings.alerts import AlertSettings
from stacks.settings.api import ApiSettings
from stacks.settings.artifacts import ArtifactSettings
from stacks.settings.charts import ChartSettings
from stacks.settings.database import DatabaseSettings
from stacks.settings.engine import (
    ENVIRONMENTS,
    PROJECT,
    DefaultFn,
    Environment,
    Meta,
    Secret,
    SettingsError,
    Validator,
    setting,
)
from stacks.settings.images import (
    DEFAULT_REGISTRY,
    IMAGE_NAMES,
    THIRD_PARTY_IMAGES,
    ImageRef,
    ImagesSettings,
    ProfileBuild,
    profile_builds,
)
from stacks.settings.ingress import IngressSettings
from stacks.settings.kubernetes import KubernetesSettings
from stacks.settings.loading import RETIRED_KEYS, declared, from_pulumi, load_settings, stack_profile_builds
from stacks.settings.mlflow import MlflowSettings
from stacks.settings.network import NetworkSettings
from stacks.settings.nfs import NfsSettings
from stacks.settings.observability import ObservabilitySettings
from stacks.settings.retention import RetentionSettings
from stacks.settings.serving import ServingSettings
from stacks.settings.stack import MODELS_SUBDOMAIN, PLATFORM_HOSTS, StackSettings
from stacks.settings.table import settings_table

__all__ = [
    "DEFAULT_REGISTRY",
    "ENVIRONMENTS",
    "GIT_CREDENTIALS_PREFIX",
    "GIT_CREDENTIAL_FIELDS",
    "GIT_KNOWN_HOSTS_KEY",
    "IMAGE_NAMES",
    "MODELS_SUBDOMAIN",
    "PLATFORM_HOSTS",
    "PROJECT",
    "RETIRED_KEYS",
    "THIRD_PARTY_IMAGES",
    "AirflowSettings",
    "AlertSettings",
    "ApiSettings",
    "ArtifactSettings",
    "ChartSettings",
    "DatabaseSettings",
    "DefaultFn",
    "Environment",
    "GitCredentials",
    "ImageRef",
    "ImagesSettings",
    "IngressSettings",
    "KubernetesSettings",
    "Meta",
    "MlflowSettings",
    "NetworkSettings",
    "NfsSettings",
    "ObservabilitySettings",
    "ProfileBuild",
    "RetentionSettings",
    "Secret",
    "ServingSettings",
    "SettingsError",
    "StackSettings",
    "Validator",
    "declared",
    "from_pulumi",
    "load_settings",
    "profile_builds",
    "setting",
    "settings_table",
    "stack_profile_builds",
]
