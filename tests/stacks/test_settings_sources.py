"""The training sources' git credentials as stack settings: each `airflow.gitCredentials.<name>.sshKey | token` is
its own secret key, refused in plaintext (never printed) like every secret, a misspelt or object-shaped key is
refused naming the right form; a source's `credentials` must name a set that fits its URL (an SSH key for SSH, a
token for https), an SSH source needs a key (its own or airflow.gitSshKey), and every SSH host (sources' and
git-sync's) needs a pinned key in airflow.gitKnownHosts (default: GitHub's and GitLab's); a URL with a token in
it is refused without quoting it; the ports the Airflow namespace opens SSH connections to follow the URLs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common import git_access
from stacks.settings import PROJECT, Secret, SettingsError, StackSettings, load_settings
from tests.stacks.test_settings import IRIS, MINIMAL

P = f"{PROJECT}:"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAfuCHKVTjquxvt6CM6tdG4SLp1Btn/nOeHHE5UOzRdf"


def config(source: dict[str, Any], **keys: str) -> dict[str, str]:
    """MINIMAL with a model `churn` fetched from `source`, and these keys (without the project prefix)."""
    churn = {**IRIS, "training": {**IRIS["training"], "source": source}}
    return {**MINIMAL, f"{P}models": json.dumps({"churn": churn}), **{f"{P}{k}": v for k, v in keys.items()}}


def load(cfg: dict[str, str], secret: tuple[str, ...] = ()) -> StackSettings:
    return load_settings("dev", cfg, {f"{P}{key}" for key in secret})


def problems_of(cfg: dict[str, str], secret: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(cfg, secret)
    return info.value.problems


SSH_SOURCE = {"repo": "git@github.com:acme/churn.git", "credentials": "churn"}
HTTPS_SOURCE = {"repo": "https://gitlab.com/acme/churn.git", "credentials": "churn"}
SSH_KEY, TOKEN = "airflow.gitCredentials.churn.sshKey", "airflow.gitCredentials.churn.token"


def test_named_credentials_are_secrets_by_name() -> None:
    s = load(config(SSH_SOURCE, **{SSH_KEY: KEY}), (SSH_KEY,))
    churn = s.airflow.git_credentials["churn"]
    assert isinstance(churn.ssh_key, Secret) and churn.ssh_key.reveal() == KEY and churn.token is None
    assert KEY not in repr(s.airflow)
    s = load(config(HTTPS_SOURCE, **{TOKEN: "glpat-x", "airflow.gitCredentials.churn.username": "bot"}), (TOKEN,))
    churn = s.airflow.git_credentials["churn"]
    assert churn.token is not None and churn.token.reveal() == "glpat-x" and churn.username == "bot"
    assert load(config(HTTPS_SOURCE, **{TOKEN: "t"}), (TOKEN,)).airflow.git_credentials["churn"].username == (
        git_access.DEFAULT_TOKEN_USERNAME
    )


@pytest.mark.parametrize("key", [SSH_KEY, TOKEN])
def test_a_credential_in_plaintext_is_refused_and_not_printed(key: str) -> None:
    problems = problems_of(config(SSH_SOURCE, **{key: KEY}))
    assert problems == [
        f"Pulumi.dev.yaml: {P}{key} is a secret; store it with `pulumi config set --secret {key} ...` "
        "(it is in plaintext now)"
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("airflow.gitCredentials.churn.sshkey", "is not a known setting (did you mean .sshKey?)"),
        ("airflow.gitCredentials.Churn.sshKey", "is not a known setting"),
        ("airflow.gitCredentials.churn", "is not a known setting"),
        ("airflow.gitCredentials", "is not a known setting"),  # one object: its secrets could not be told apart
    ],
)
def test_a_key_not_of_the_form_is_refused_naming_the_form(key: str, expected: str) -> None:
    problems = problems_of(config({}, **{key: '{"sshKey": "x"}'}), (key,))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"Pulumi.dev.yaml: {P}{key} {expected}")
    assert f"{P}airflow.gitCredentials.<name>.sshKey, .token or .username" in problems[0]


def test_a_username_alone_is_no_credential() -> None:
    problems = problems_of(config({}, **{"airflow.gitCredentials.bot.username": "bot"}))
    assert problems == [f"Pulumi.dev.yaml: {P}airflow.gitCredentials.bot has a username but neither .sshKey nor .token"]


CHURN = f"{P}models.churn.training.source"


@pytest.mark.parametrize(
    ("source", "keys", "expected"),
    [
        (SSH_SOURCE, {}, f"{CHURN}.credentials is churn, but neither {P}airflow.gitCredentials.churn.sshKey nor"),
        (SSH_SOURCE, {TOKEN: "t"}, f"{CHURN}.repo git@github.com:acme/churn.git is an SSH URL, but {P}{SSH_KEY} is"),
        (
            HTTPS_SOURCE,
            {SSH_KEY: KEY},
            f"{CHURN}.repo https://gitlab.com/acme/churn.git is an https URL, but {P}{TOKEN}",
        ),
        (
            {"repo": "ssh://git@github.com/acme/churn.git"},
            {},
            f"{CHURN}.repo ssh://git@github.com/acme/churn.git is an SSH URL, but neither {CHURN}.credentials nor "
            f"{P}airflow.gitSshKey is set",
        ),
        (
            {"repo": "ssh://git@git.acme.internal:7999/churn.git", "credentials": "churn"},
            {SSH_KEY: KEY},
            f"{CHURN}.repo ssh://git@git.acme.internal:7999/churn.git is on [git.acme.internal]:7999, which has no "
            f"host key in {P}airflow.gitKnownHosts",
        ),
    ],
)
def test_a_source_needs_credentials_that_fit_its_url_and_a_pinned_host(
    source: dict[str, Any], keys: dict[str, str], expected: str
) -> None:
    problems = problems_of(config(source, **keys), tuple(keys))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"Pulumi.dev.yaml: {expected}")


def test_the_deploy_key_serves_ssh_sources_and_pinned_hosts_admit_other_servers() -> None:
    deploy = {"airflow.gitSshKey": KEY}
    s = load(config({"repo": "ssh://git@github.com/acme/churn.git"}, **deploy), tuple(deploy))
    assert s.fetched_sources == {"churn": "ssh://git@github.com/acme/churn.git"}
    own = {
        SSH_KEY: KEY,
        "airflow.gitKnownHosts": f"[git.acme.internal]:7999 {HOST_KEY}\n",
    }
    s = load(config({"repo": "ssh://git@git.acme.internal:7999/churn.git", "credentials": "churn"}, **own), (SSH_KEY,))
    assert s.airflow.known_hosts == own["airflow.gitKnownHosts"]
    assert s.git_ssh_ports == (7999,)  # the airflow.gitRepo of MINIMAL is https


def test_git_sync_over_ssh_needs_its_host_pinned_too() -> None:
    keys = {"airflow.gitSshKey": KEY, "airflow.gitRepo": "ssh://git@git.acme.internal/platform.git"}
    problems = problems_of(config({}, **keys), ("airflow.gitSshKey",))
    assert problems == [
        f"Pulumi.dev.yaml: {P}airflow.gitRepo ssh://git@git.acme.internal/platform.git is on git.acme.internal, which "
        f"has no host key in {P}airflow.gitKnownHosts (unset: only github.com and gitlab.com): add the keys the host "
        "publishes (`ssh-keyscan -p 22 git.acme.internal`, compared with its published fingerprints)"
    ]


def test_a_ref_of_the_platform_repository_is_fetched_from_airflow_git_repo() -> None:
    ssh_repo = {"airflow.gitRepo": "git@github.com:acme/mlops.git"}
    problems = problems_of(config({"ref": "v2"}, **ssh_repo))
    assert problems == [
        f"Pulumi.dev.yaml: {CHURN}.ref fetches {P}airflow.gitRepo git@github.com:acme/mlops.git, which is an SSH URL, "
        f"but neither {CHURN}.credentials nor {P}airflow.gitSshKey is set: the training pod would have no key to "
        "fetch it with"
    ]
    assert load(config({"ref": "v2"})).fetched_sources == {"churn": "https://github.com/acme/mlops.git"}
    assert load(config({})).fetched_sources == {}  # the platform's own checkout


def test_malformed_known_hosts_are_refused() -> None:
    problems = problems_of(config({}, **{"airflow.gitKnownHosts": "github.com ssh-rsa not-base64"}))
    assert problems == [
        f'Pulumi.dev.yaml: {P}airflow.gitKnownHosts line 1: the key of github.com is not base64; got "github.com '
        'ssh-rsa not-base64"'
    ]


def test_a_token_in_a_source_url_is_refused_without_quoting_it() -> None:
    problems = problems_of(config({"repo": "https://oauth2:glpat-SECRET@gitlab.com/acme/churn.git"}))
    assert len(problems) == 1 and "glpat-SECRET" not in problems[0]
    assert problems[0].startswith(f"Pulumi.dev.yaml: {CHURN}.repo must not carry a user, password or token")
    assert "set training.source.credentials to <name>" in problems[0]


def test_credentials_of_a_source_that_is_not_fetched_are_refused() -> None:
    problems = problems_of(config({"credentials": "churn"}, **{SSH_KEY: KEY}), (SSH_KEY,))
    assert problems == [
        f"Pulumi.dev.yaml: {CHURN} credentials goes with repo or ref: without them the platform's own checkout is "
        "used (nothing is fetched)"
    ]
