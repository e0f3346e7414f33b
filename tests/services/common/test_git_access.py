"""The git access helpers: the shipped known_hosts holds exactly the host keys GitHub and GitLab.com publish (by
their published fingerprints); a host is found in a known_hosts text as OpenSSH finds it (`ssh-keygen -F`: plain
names, lists, wildcards, negations, `[host]:port`, hashed names), revoked keys do not count, malformed text is
refused naming the line; SSH URLs are told from https ones with their host and port; a URL carrying a secret is
refused without being quoted; each source mounts the Secret of its credentials, the deploy key or none."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from services.common import git_access

# Published at https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/githubs-ssh-key-fingerprints
# and https://docs.gitlab.com/user/gitlab_com/#ssh-host-keys-fingerprints
PUBLISHED_FINGERPRINTS = {
    ("github.com", "ssh-ed25519"): "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
    ("github.com", "ecdsa-sha2-nistp256"): "SHA256:p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM",
    ("github.com", "ssh-rsa"): "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
    ("gitlab.com", "ssh-ed25519"): "SHA256:eUXGGm1YGsMAS7vkcx6JOJdOGHPem5gQp4taiCfCLB8",
    ("gitlab.com", "ecdsa-sha2-nistp256"): "SHA256:HbW3g8zUjNSksFbqTiUWPWg2Bq1x8xdGUrliXFzSnUw",
    ("gitlab.com", "ssh-rsa"): "SHA256:ROQFvPThGrW4RuWLoL9tq9I9zJ42fK4XywyRtbOz/EQ",
}
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAfuCHKVTjquxvt6CM6tdG4SLp1Btn/nOeHHE5UOzRdf"


def fingerprint(key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a base64 public key."""
    digest = hashlib.sha256(base64.b64decode(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def test_the_default_known_hosts_are_the_published_keys_of_github_and_gitlab() -> None:
    found = {}
    for line in git_access.DEFAULT_KNOWN_HOSTS.splitlines():
        host, kind, key = line.split()
        found[(host, kind)] = fingerprint(key)
    assert found == PUBLISHED_FINGERPRINTS
    assert git_access.known_hosts_problem(git_access.DEFAULT_KNOWN_HOSTS) is None


KNOWN_HOSTS = f"""\
# comments and blank lines are skipped

git.acme.internal,10.1.2.3 {ED25519}
*.corp.example,!bad.corp.example {ED25519}
[ssh.acme.internal]:7999 {ED25519}
ci-?.acme.internal {ED25519}
"""
NAMES = [
    ("git.acme.internal", 22),
    ("10.1.2.3", 22),
    ("GIT.ACME.INTERNAL", 22),
    ("other.acme.internal", 22),
    ("git.acme.internal", 2222),
    ("code.corp.example", 22),
    ("bad.corp.example", 22),
    ("ssh.acme.internal", 7999),
    ("ssh.acme.internal", 22),
    ("ci-1.acme.internal", 22),
    ("ci-12.acme.internal", 22),
    ("github.com", 22),
]


@pytest.fixture
def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    return found


def openssh_finds(ssh_keygen: str, known_hosts: Path, host: str, port: int) -> bool:
    name = host if port == 22 else f"[{host}]:{port}"
    return subprocess.run([ssh_keygen, "-F", name, "-f", str(known_hosts)], capture_output=True).returncode == 0


def test_hosts_are_found_as_openssh_finds_them(ssh_keygen: str, tmp_path: Path) -> None:
    plain = tmp_path / "known_hosts"
    plain.write_text(KNOWN_HOSTS)
    hashed = tmp_path / "hashed_known_hosts"
    hashed.write_text("".join(f"{host} {ED25519}\n" for host in ("git.acme.internal", "[ssh.acme.internal]:7999")))
    subprocess.run([ssh_keygen, "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert "acme" not in hashed.read_text()  # the names are hashed now
    for path in (plain, hashed):
        text = path.read_text()
        answers = {(host, port): git_access.has_host_key(text, host, port) for host, port in NAMES}
        assert answers == {(host, port): openssh_finds(ssh_keygen, path, host, port) for host, port in NAMES}
    assert git_access.has_host_key(plain.read_text(), "ssh.acme.internal", 7999)
    assert not git_access.has_host_key(plain.read_text(), "bad.corp.example")


def test_a_revoked_key_does_not_count() -> None:
    assert not git_access.has_host_key(f"@revoked git.acme.internal {ED25519}\n", "git.acme.internal")
    assert git_access.has_host_key(f"@cert-authority *.acme.internal {ED25519}\n", "git.acme.internal")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "must hold at least one host key"),
        ("# only a comment\n", "must hold at least one host key"),
        ("github.com ssh-ed25519\n", "line 1: must be `<host patterns> <key type> <base64 key>`"),
        (f"# x\ngithub.com {ED25519.split()[0]} not*base64\n", "line 2: the key of github.com is not base64"),
        (f"github.com ssh-rsa {ED25519.split()[1]}\n", "line 1: the key of github.com is not of type ssh-rsa"),
        (f"@trusted github.com {ED25519}\n", "line 1: unknown marker @trusted"),
    ],
)
def test_malformed_known_hosts_are_refused_naming_the_line(text: str, problem: str) -> None:
    assert (git_access.known_hosts_problem(text) or "").startswith(problem)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ssh://git@github.com/acme/churn.git", ("github.com", 22)),
        ("ssh://git@git.acme.internal:7999/team/churn.git", ("git.acme.internal", 7999)),
        ("ssh://git@[fd00::1]:2222/churn.git", ("fd00::1", 2222)),
        ("git@gitlab.com:acme/churn.git", ("gitlab.com", 22)),
        ("https://github.com/acme/churn.git", None),
        ("/srv/git/churn.git", None),
        ("file:///srv/git/churn.git", None),
    ],
)
def test_ssh_urls_give_their_host_and_port(url: str, host: tuple[str, int] | None) -> None:
    assert git_access.ssh_host(url) == host


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://github.com/acme/churn.git", False),
        ("ssh://git@github.com/acme/churn.git", False),
        ("git@github.com:acme/churn.git", False),
        ("https://ghp_0123456789abcdef@github.com/acme/churn.git", True),  # GitHub takes a token as the user
        ("https://x-access-token:ghp_0123456789abcdef@github.com/acme/churn.git", True),
        ("ssh://git:hunter22@github.com/acme/churn.git", True),
    ],
)
def test_a_url_carrying_a_secret_is_refused_without_quoting_it(url: str, refused: bool) -> None:
    problem = git_access.url_secret_problem(url)
    assert (problem is not None) == refused
    if problem is not None:
        assert "ghp_" not in problem and "hunter22" not in problem
        assert "pulumi config set --secret airflow.gitCredentials.<name>.token" in problem


@pytest.mark.parametrize(
    ("repo", "credentials", "secret"),
    [
        ("git@github.com:acme/churn.git", "churn", "git-credentials-churn"),
        ("https://github.com/acme/churn.git", "churn", "git-credentials-churn"),
        ("git@github.com:acme/churn.git", None, git_access.DEPLOY_KEY_SECRET),
        (None, None, git_access.DEPLOY_KEY_SECRET),  # a ref of the platform's own repository
        ("https://github.com/acme/public.git", None, None),
    ],
)
def test_each_source_mounts_its_credentials_the_deploy_key_or_nothing(
    repo: str | None, credentials: str | None, secret: str | None
) -> None:
    assert git_access.credentials_secret(repo, credentials) == secret
