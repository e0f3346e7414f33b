"""Read-only git credentials of the training pods: one definition for the Pulumi program, the pods and the fetch.

A model whose `training.source` names a `repo` or a `ref` has its code fetched by its training task
(`dags/mlops_tasks/sources.py`), inside the training pod. The credentials it may use:

- `training.source.credentials: <name>`: the stack's `airflow.gitCredentials.<name>.sshKey` (an SSH private key, for
  `ssh://` and `git@` URLs) or `.token` (with `.username`, for `https://` URLs), each a secret stack setting, in the
  Secret `git-credentials-<name>`;
- otherwise, for an SSH URL (or the platform's own repository): git-sync's deploy key `airflow.gitSshKey`, in the
  Secret `airflow-git-ssh-key`; an `https://` URL without credentials is fetched anonymously (a public repository).

The program creates those Secrets and the ConfigMap `git-known-hosts` (the SSH host keys the fetch accepts:
`airflow.gitKnownHosts`, default `DEFAULT_KNOWN_HOSTS`) in the Airflow namespace, where the task pods run
(`components/airflow.py`). The training pod mounts them read-only as files under `MOUNT`
(`services/common/training_pod.py`); the fetch points git at those files and never puts a credential in an
argument, a URL, the environment or a message. Host keys are always checked (`StrictHostKeyChecking=yes`).

Only the standard library is imported: the program, the DAGs and the stack settings all load this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from urllib.parse import urlsplit

# git-sync's deploy key (airflow.gitSshKey): the Secret and the key the Airflow chart reads it from.
DEPLOY_KEY_SECRET, DEPLOY_KEY_KEY = "airflow-git-ssh-key", "gitSshKey"
KNOWN_HOSTS_CONFIGMAP = "git-known-hosts"
# The training pod's view: one read-only folder with the files below (those its source's Secret holds).
VOLUME = "git-credentials"
MOUNT = "/var/run/secrets/mlops-platform/git"
SSH_KEY_FILE, TOKEN_FILE, USERNAME_FILE, KNOWN_HOSTS_FILE = "ssh-key", "token", "username", "known_hosts"
# Owned by root, group the pod's fsGroup (the task user's group): readable by the task, writable by nobody.
FILE_MODE = 0o440
# Sent with a token when `airflow.gitCredentials.<name>.username` is unset: GitHub (personal and app tokens) and
# GitLab (personal, project and group tokens) accept it.
DEFAULT_TOKEN_USERNAME = "x-access-token"
CREDENTIALS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"
SSH_PORT = 22

# The SSH host keys GitHub and GitLab.com publish (docs.github.com: "GitHub's SSH key fingerprints";
# docs.gitlab.com: "GitLab.com settings", SSH known_hosts entries); a test checks their fingerprints.
_PUBLISHED_HOST_KEYS = (
    ("github.com", "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"),
    (
        "github.com",
        "ecdsa-sha2-nistp256",
        "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N8"
        "7uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
    ),
    (
        "github.com",
        "ssh-rsa",
        "AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeY"
        "rnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6"
        "JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nG"
        "rlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM"
        "4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6Cm"
        "K2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=",
    ),
    ("gitlab.com", "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIAfuCHKVTjquxvt6CM6tdG4SLp1Btn/nOeHHE5UOzRdf"),
    (
        "gitlab.com",
        "ecdsa-sha2-nistp256",
        "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFSMqzJeV9rUzU4kWitGjeR4PWSa29SPqJ1fVkhtj3Hw"
        "9xjLVXVYrU9QlYWrOLXBpQ6KWjbjTDTdDkoohFzgbEY=",
    ),
    (
        "gitlab.com",
        "ssh-rsa",
        "AAAAB3NzaC1yc2EAAAADAQABAAABAQCsj2bNKTBSpIYDEGk9KxsGh3mySTRgMtXL583qmBpzeQ+jqCMRgBqB98u3z++J1sKl"
        "XHWfM9dyhSevkMwSbhoR8XIq/U0tCNyokEi/ueaBMCvbcTHhO7FcwzY92WK4Yt0aGROY5qX2UKSeOvuP4D6TPqKF1onrSzH9"
        "bx9XUf2lEdWT/ia1NEKjunUqu1xOB/StKDHMoX4/OKyIzuS0q/T1zOATthvasJFoPrAjkohTyaDUz2LN5JoH839hViyEG82y"
        "B+MjcFV5MU3N1l1QL3cVUCh93xSaua1N85qivl+siMkPGbO5xR/En4iEY6K2XPASUEMaieWVNTRCtJ4S8H+9",
    ),
)
DEFAULT_KNOWN_HOSTS = "".join(f"{host} {kind} {key}\n" for host, kind, key in _PUBLISHED_HOST_KEYS)

_SCP_LIKE = re.compile(r"^(?P<user>[^@/:]+)@(?P<host>\[[^\]]+\]|[^/:]+):")
_MARKERS = ("@cert-authority", "@revoked")


def secret_name(credentials: str | None) -> str:
    """The Secret that holds the credentials named `credentials` (None: the deploy key, airflow.gitSshKey)."""
    return DEPLOY_KEY_SECRET if credentials is None else f"git-credentials-{credentials}"


def ssh_host(url: str) -> tuple[str, int] | None:
    """Host and port of an SSH git URL (`ssh://[user@]host[:port]/path` or `user@host:path`); None for others."""
    if url.startswith("ssh://"):
        parts = urlsplit(url)
        return (parts.hostname, parts.port or SSH_PORT) if parts.hostname else None
    found = _SCP_LIKE.match(url)
    return (found["host"].strip("[]"), SSH_PORT) if found else None


def url_secret_problem(url: str) -> str | None:
    """Why a git URL in a stack file is refused (a password, or any user in an https URL: GitHub takes a token
    as the user), or None. The answer never quotes the URL."""
    if not url.startswith(("https://", "ssh://")):
        return None
    userinfo = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    if ":" not in userinfo and not (userinfo and url.startswith("https://")):
        return None
    return (
        "must not carry a user, password or token (a stack file is no place for a secret): store the token with "
        "`pulumi config set --secret airflow.gitCredentials.<name>.token`"
    )


def credentials_secret(repo: str | None, credentials: str | None) -> str | None:
    """The Secret a fetched source's pod mounts: its named credentials, else the deploy key for an SSH URL or the
    platform's own repository (`repo` None), else none (an `https://` URL fetched anonymously)."""
    if credentials is not None:
        return secret_name(credentials)
    if repo is None or ssh_host(repo) is not None:
        return DEPLOY_KEY_SECRET
    return None


# --- known_hosts --------------------------------------------------------------------------------------
def _entries(known_hosts: str) -> list[tuple[int, str | None, list[str]]]:
    """(line number, marker, fields) of every entry."""
    out = []
    for number, line in enumerate(known_hosts.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        out.append((number, marker, fields))
    return out


def known_hosts_problem(known_hosts: str) -> str | None:
    """None when `known_hosts` is an OpenSSH known_hosts text with at least one key, else what is wrong."""
    entries = _entries(known_hosts)
    if not entries:
        return "must hold at least one host key (lines `<host> <key type> <base64 key>`, as ssh-keyscan prints)"
    for number, marker, fields in entries:
        if marker is not None and marker not in _MARKERS:
            return f"line {number}: unknown marker {marker} (known: {', '.join(_MARKERS)})"
        if len(fields) < 3:
            return f"line {number}: must be `<host patterns> <key type> <base64 key>`"
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            return f"line {number}: the key of {fields[0]} is not base64"
        if blob[4 : 4 + int.from_bytes(blob[:4], "big")] != fields[1].encode():
            return f"line {number}: the key of {fields[0]} is not of type {fields[1]}"
    return None


def _pattern_matches(pattern: str, name: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name.lower()) is not None


def _host_matches(patterns: str, name: str) -> bool:
    """Whether a known_hosts host field (patterns with * and ?, !negations, or one hashed |1|salt|hash) names
    `name`, as OpenSSH matches it."""
    if patterns.startswith("|1|"):
        _, _, salt, digest = patterns.split("|", 3)
        try:
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(base64.b64encode(mac).decode(), digest)
    matched = False
    for pattern in patterns.split(","):
        if pattern.startswith("!"):
            if _pattern_matches(pattern[1:], name):
                return False
        elif _pattern_matches(pattern, name):
            matched = True
    return matched


def has_host_key(known_hosts: str, host: str, port: int = SSH_PORT) -> bool:
    """Whether `known_hosts` holds a (not revoked) key for `host` on `port`: what ssh needs to connect with
    StrictHostKeyChecking=yes. Names on another port than 22 are looked up as `[host]:port`, as ssh does."""
    name = host if port == SSH_PORT else f"[{host}]:{port}"
    return any(
        marker != "@revoked" and len(fields) >= 3 and _host_matches(fields[0], name)
        for _, marker, fields in _entries(known_hosts)
    )
