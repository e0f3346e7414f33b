"""Fetching a model's code with the training pod's read-only git credentials (`mlops_tasks.sources`):

- the git environment follows the files mounted: for an SSH URL, GIT_SSH_COMMAND with the key as the only identity,
  the pinned known_hosts and strict host key checking (as OpenSSH itself reads the command, `ssh -G`), nothing
  when no file is there (local runs); for an https URL, a credential helper scoped to its host that real git asks
  for the token file's content, never for another host and never over plain http; no value holds a credential;
- a real `git fetch` over SSH (a stand-in `ssh` on PATH that checks what a server would: the identity, the host
  key checking, the host in known_hosts) succeeds with the key file, and fails without it or for a host not in
  known_hosts, naming the reason;
- a real `git fetch` over https from a local TLS git server that demands the token succeeds with the token file and
  fails without it; the token reaches neither the checkout's config nor any message."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import shlex
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlops_tasks import sources

from services.common import git_access
from services.common.catalog import Source

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nthe deploy key of the churn repository\n-----END OPENSSH PRIVATE KEY-----\n"
TOKEN = "glpat-the-read-only-token-0123456789"
HOST = "git.acme.internal"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAfuCHKVTjquxvt6CM6tdG4SLp1Btn/nOeHHE5UOzRdf"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A repository with one commit on main."""
    path = tmp_path / "churn"
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.email", "t@example.com", cwd=path)
    git("config", "user.name", "t", cwd=path)
    (path / "train.py").write_text("print('churn')\n")
    git("add", "train.py", cwd=path)
    git("commit", "-q", "-m", "churn v1", cwd=path)
    return path


def mount(folder: Path, **files: str) -> Path:
    """A credentials folder as the training pod mounts it (files named as in git_access)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(content)
    return folder


# --- the environment ------------------------------------------------------------------------------
def test_nothing_mounted_leaves_git_as_the_environment_sets_it(tmp_path: Path) -> None:
    empty = mount(tmp_path / "none")
    for url in ("git@github.com:acme/churn.git", "ssh://git@github.com/acme/churn.git", "https://github.com/a/b"):
        assert sources.git_environment(url, empty) == {}


def test_an_ssh_url_gets_the_key_the_pinned_hosts_and_strict_checking(tmp_path: Path) -> None:
    both = mount(tmp_path / "both", **{"ssh-key": KEY, "known_hosts": f"{HOST} {HOST_KEY}\n"})
    command = shlex.split(sources.git_environment("git@github.com:acme/churn.git", both)["GIT_SSH_COMMAND"])
    assert command[0] == "ssh"
    assert command[command.index("-i") + 1] == str(both / git_access.SSH_KEY_FILE)
    options = {command[i + 1] for i, part in enumerate(command) if part == "-o"}
    assert options == {
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={both / git_access.KNOWN_HOSTS_FILE}",
        "IdentitiesOnly=yes",
    }
    hosts_only = mount(tmp_path / "hosts-only", known_hosts=f"{HOST} {HOST_KEY}\n")  # a deploy key not set
    command = shlex.split(sources.git_environment(f"ssh://git@{HOST}:7999/churn.git", hosts_only)["GIT_SSH_COMMAND"])
    assert "-i" not in command and "StrictHostKeyChecking=yes" in command
    assert sources.git_environment("https://github.com/acme/churn.git", both) == {}  # an SSH key is no https login


def test_openssh_reads_the_command_with_host_key_checking_on(tmp_path: Path) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client is not installed")
    folder = mount(tmp_path / "both", **{"ssh-key": KEY, "known_hosts": f"{HOST} {HOST_KEY}\n"})
    command = shlex.split(sources.git_environment(f"git@{HOST}:churn.git", folder)["GIT_SSH_COMMAND"])
    # -G prints the configuration ssh would connect with, without connecting
    printed = subprocess.run([*command, "-G", f"git@{HOST}"], check=True, capture_output=True, text=True).stdout
    config = dict(line.split(" ", 1) for line in printed.splitlines())
    assert config["stricthostkeychecking"] == "true"
    assert config["batchmode"] == "yes" and config["identitiesonly"] == "yes"
    assert config["identityfile"] == str(folder / "ssh-key")
    assert config["userknownhostsfile"] == str(folder / "known_hosts")


def credential_fill(env: dict[str, str], host: str) -> subprocess.CompletedProcess[str]:
    """What real git's credential machinery answers for https://<host> with `env`."""
    return subprocess.run(
        ["git", "credential", "fill"],
        input=f"protocol=https\nhost={host}\n\n",
        capture_output=True,
        text=True,
        env={**os.environ, **env, "GIT_TERMINAL_PROMPT": "0"},
    )


def test_an_https_url_gets_the_token_from_its_file_for_its_host_only(tmp_path: Path) -> None:
    folder = mount(tmp_path / "token", token=TOKEN + "\n")
    env = sources.git_environment(f"https://{HOST}/team/churn.git", folder)
    assert not any(TOKEN in value for value in env.values())  # the helper reads the file when git asks
    answer = credential_fill(env, HOST)
    assert answer.returncode == 0, answer.stderr
    assert f"username={git_access.DEFAULT_TOKEN_USERNAME}\npassword={TOKEN}\n" in answer.stdout
    other = credential_fill(env, "evil.example.com")
    assert other.returncode != 0 and TOKEN not in other.stdout + other.stderr
    mount(folder, username="deploy-token-17\n")
    assert (
        "username=deploy-token-17\n"
        in credential_fill(sources.git_environment(f"https://{HOST}/x", folder), HOST).stdout
    )
    assert sources.git_environment(f"http://{HOST}/team/churn.git", folder) == {}  # never a token in clear text


# --- a real fetch over SSH ------------------------------------------------------------------------
FAKE_SSH = """#!{python}
# Stands in for ssh: checks what a server and ssh would (host key checking, the host in known_hosts, the key),
# then runs the remote git command locally.
import json, os, sys

args, options, identity = sys.argv[1:], {{}}, None
while args and args[0].startswith("-"):
    flag = args.pop(0)
    if flag in ("-o", "-i", "-p", "-l", "-F"):
        value = args.pop(0)
        if flag == "-o":
            options[value.partition("=")[0]] = value.partition("=")[2]
        elif flag == "-i":
            identity = value
host = args[0].rpartition("@")[2]
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps({{"identity": identity, "options": options, "host": host}}) + "\\n")
def refuse(message):
    sys.stderr.write(message + "\\n")
    sys.exit(255)
if options.get("StrictHostKeyChecking") != "yes":
    refuse("fake ssh: host key checking is not strict")
known = options.get("UserKnownHostsFile")
if not known or host not in [line.split()[0] for line in open(known) if line.strip()]:
    refuse("Host key verification failed.")
if identity is None or open(identity).read() != open(os.environ["FAKE_SSH_AUTHORIZED_KEY"]).read():
    refuse("git@" + host + ": Permission denied (publickey).")
os.execvp("sh", ["sh", "-c", " ".join(args[1:])])
"""


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`ssh` on PATH is the stand-in; returns the log of its calls (one JSON line each)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ssh"
    script.write_text(FAKE_SSH.format(python=sys.executable))
    script.chmod(0o755)
    authorized = tmp_path / "authorized-key"
    authorized.write_text(KEY)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setenv("FAKE_SSH_AUTHORIZED_KEY", str(authorized))
    return log


def test_the_key_file_fetches_over_ssh(
    origin: Path, fake_ssh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = mount(tmp_path / "mounted", **{"ssh-key": KEY, "known_hosts": f"{HOST} {HOST_KEY}\n"})
    monkeypatch.setattr(sources, "CREDENTIALS_DIR", folder)
    with sources.checkout(Source(repo=f"ssh://git@{HOST}{origin}", credentials="churn"), tmp_path) as checkout:
        assert (checkout / "train.py").read_text() == "print('churn')\n"
        assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", "HEAD", cwd=origin)
    calls = [json.loads(line) for line in fake_ssh.read_text().splitlines()]
    assert calls and all(call["identity"] == str(folder / "ssh-key") and call["host"] == HOST for call in calls)


def test_without_the_key_or_the_host_key_the_fetch_fails_naming_why(
    origin: Path, fake_ssh: Path, tmp_path: Path
) -> None:
    url = f"ssh://git@{HOST}{origin}"
    no_key = mount(tmp_path / "no-key", known_hosts=f"{HOST} {HOST_KEY}\n")
    with pytest.raises(sources.SourceError, match=r"could not be fetched: .*Permission denied \(publickey\)"):
        sources.fetch(url, "main", tmp_path / "a", no_key)
    other_host = mount(tmp_path / "other-host", **{"ssh-key": KEY, "known_hosts": f"github.com {HOST_KEY}\n"})
    with pytest.raises(sources.SourceError, match=r"could not be fetched: .*Host key verification failed"):
        sources.fetch(url, "main", tmp_path / "b", other_host)
    sources.fetch(url, "main", tmp_path / "c", mount(tmp_path / "ok", **{"ssh-key": KEY, "known_hosts": f"{HOST} x\n"}))


# --- a real fetch over https ----------------------------------------------------------------------
def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class GitOverHttps(BaseHTTPRequestHandler):
    """git's smart HTTP protocol (`git http-backend`) for the repositories under `server.root`, for requests with
    the token as Basic credentials only (401 otherwise, as GitHub and GitLab answer)."""

    server: GitServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        login = base64.b64encode(f"{git_access.DEFAULT_TOKEN_USERNAME}:{TOKEN}".encode()).decode()
        authorized = self.headers.get("Authorization") == f"Basic {login}"
        self.server.answers.append(authorized)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not authorized:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        cgi = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": git_access.DEFAULT_TOKEN_USERNAME,
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=cgi, capture_output=True, check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().splitlines():
            field, _, value = line.partition(":")
            if field.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((field, value.strip()))
        self.send_response(status)
        for field, value in headers:
            self.send_header(field, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve


class GitServer(ThreadingHTTPServer):
    root: Path
    answers: list[bool]


@pytest.fixture
def https_origin(origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, GitServer]]:
    """The origin served over https by a local git server (git trusts its certificate); its URL and the server."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = GitServer(("127.0.0.1", 0), GitOverHttps)
    server.root, server.answers = origin.parent, []
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GIT_SSL_CAINFO", str(cert))
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/{origin.name}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_token_file_fetches_over_https(https_origin: tuple[str, GitServer], origin: Path, tmp_path: Path) -> None:
    url, server = https_origin
    dest = tmp_path / "fetched"
    dest.mkdir()
    commit = sources.fetch(url, "main", dest, mount(tmp_path / "mounted", token=TOKEN + "\n"))
    assert commit == git("rev-parse", "HEAD", cwd=origin)
    assert True in server.answers  # the server saw the token (after its 401 asked for it)
    assert TOKEN not in (dest / ".git" / "config").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(sources.SourceError) as refused:
        sources.fetch(url, "main", empty, mount(tmp_path / "nothing"))
    assert "could not be fetched" in str(refused.value) and TOKEN not in str(refused.value)
