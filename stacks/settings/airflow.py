"""Settings group `airflow.*`: Airflow, its DAGs repository and the named git credentials."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from services.common import git_access
from stacks.settings.engine import Secret, check_image_tag, setting

GIT_KNOWN_HOSTS_KEY = "airflow.gitKnownHosts"
GIT_CREDENTIALS_PREFIX = "airflow.gitCredentials."
# The keys of one set of named git credentials, `airflow.gitCredentials.<name>.<key>`: (field, secret, doc).
GIT_CREDENTIAL_FIELDS: dict[str, tuple[str, bool, str]] = {
    "sshKey": (
        "ssh_key",
        True,
        "SSH private key of a read-only deploy key, for the ssh:// and git@ training sources whose "
        "training.source.credentials is <name>",
    ),
    "token": ("token", True, "read-only access token for the https:// training sources whose credentials is <name>"),
    "username": ("username", False, f"user name sent with that token; unset = {git_access.DEFAULT_TOKEN_USERNAME}"),
}


@dataclass(frozen=True)
class GitCredentials:
    """Read-only git credentials that training sources name (`training.source.credentials: <name>`): the secret
    stack settings `airflow.gitCredentials.<name>.sshKey` and `.token`, and `.username`. Each is its own key, stored
    encrypted (`pulumi config set --secret`), so that a plaintext one is found and refused like any secret."""

    ssh_key: Secret | None = None
    token: Secret | None = None
    username: str = git_access.DEFAULT_TOKEN_USERNAME


@dataclass(frozen=True)
class AirflowSettings:
    chart_version: str = setting("airflow.chartVersion", "official Apache Airflow chart version", default="1.21.0")
    executor: Literal["KubernetesExecutor", "CeleryExecutor"] = setting(
        "airflow.executor",
        "Airflow executor",
        default="KubernetesExecutor",
        choices=("KubernetesExecutor", "CeleryExecutor"),
    )
    image_repository: str = setting(
        "airflow.imageRepository",
        "Airflow image that carries the DAGs' dependencies; used when images.airflow is unset",
        default="apache/airflow",
    )
    image_tag: str = setting(
        "airflow.imageTag",
        "tag of that image (build services/airflow/Dockerfile for the DAGs' libraries)",
        default="3.3.2-python3.11",
        check=check_image_tag,
    )
    git_repo: str = setting(
        "airflow.gitRepo", "git URL of the DAGs (git-sync)", required=True, pattern=r"^(https://|ssh://|git@)"
    )
    git_branch: str = setting("airflow.gitBranch", "branch git-sync follows", default="main")
    git_sub_path: str = setting("airflow.gitSubPath", "folder of the DAGs in the repository", default="dags")
    remote_logging: bool = setting(
        "airflow.remoteLogging",
        "task logs to the bucket's Airflow prefix (true) or to the NFS log volume (false)",
        default=True,
    )
    git_ssh_key: Secret | None = setting(
        "airflow.gitSshKey",
        "SSH private key for git-sync (secret); unset = public HTTPS repository. Also the training pods' key for "
        "the SSH sources that name no training.source.credentials",
        secret=True,
    )
    git_known_hosts: str | None = setting(
        GIT_KNOWN_HOSTS_KEY,
        "SSH host keys (known_hosts lines, as ssh-keyscan prints them) that git-sync and the training pods accept; "
        "unset = the keys github.com and gitlab.com publish. Host key checking is never off",
        check=lambda value: git_access.known_hosts_problem(str(value)),
    )
    git_credentials: Mapping[str, GitCredentials] = field(default_factory=dict)
    """Named read-only credentials of the training sources, from the keys `airflow.gitCredentials.<name>.*`."""

    @property
    def known_hosts(self) -> str:
        """The SSH host keys the platform's git clients accept (airflow.gitKnownHosts, else GitHub's and GitLab's)."""
        return self.git_known_hosts or git_access.DEFAULT_KNOWN_HOSTS
