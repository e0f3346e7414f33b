"""Process plumbing shared by every devstack launcher.

- `free_port()` finds a free loopback TCP port; `ensure_port_free()` fails clearly when a port is taken.
- `find_binary()` resolves an executable from the project's `.venv/bin` (then PATH) or fails clearly.
- `ManagedProcess` starts a command in its own process group (session), sends its output to a log file,
  waits until a readiness check passes (bounded, showing the log tail on failure) and, on exit,
  terminates the whole process group (SIGTERM, then SIGKILL) so that no child is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"
# The interpreter running devstack lives in the project's virtualenv; its bin/ holds mlflow, moto_server...
VENV_BIN = Path(sys.executable).parent


class DevstackError(RuntimeError):
    """A local server could not be started (port taken, binary missing, not ready in time, exited)."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could listen on `port` now. SO_REUSEADDR, as servers (uvicorn, gunicorn) set it:
    connections of a stopped server linger in TIME_WAIT for a minute and must not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def ensure_port_free(port: int, host: str = LOOPBACK, what: str = "server") -> None:
    if not port_is_free(port, host):
        raise DevstackError(f"cannot start {what}: port {host}:{port} is already in use")


def find_binary(name: str) -> str:
    """Path of executable `name`: the project's virtualenv first, then PATH; a clear error if absent."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise DevstackError(f"executable {name!r} not found in {VENV_BIN} or on PATH")
    return found


def env_with_venv(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment with the virtualenv's bin/ first on PATH, plus `extra`."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def credentials_as_files(env: Mapping[str, str], names: Sequence[str], folder: Path) -> dict[str, str]:
    """`env` with each variable of `names` that it sets moved into a file of `folder` (mode 0600) named by
    `<NAME>_FILE` instead, the way the cluster gives a pod its credentials (services/common/contract.py)."""
    moved = dict(env)
    for name in names:
        value = moved.pop(name, None)
        if value is None:
            continue
        path = folder / name
        path.touch(mode=0o600)
        path.write_text(value + "\n", encoding="utf-8")
        moved[f"{name}_FILE"] = str(path)
    return moved


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URL built here
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ManagedProcess:
    """A command run in its own process group with its output in `log_path`.

    Use as a context manager: `__enter__` starts it and waits for `ready` (if given) for at most
    `start_timeout` seconds; `__exit__` (or `stop()`) terminates the whole process group.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        ready: Callable[[], bool] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        ports: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else env_with_venv()
        self.cwd = cwd
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix=f"devstack-{name}-", suffix=".log")
            os.close(fd)
            log_path = tmp
        self.log_path = Path(log_path)
        self.ready = ready
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.ports = tuple(ports)
        self.proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> ManagedProcess:
        if self.proc is not None:
            raise DevstackError(f"{self.name} is already started")
        if not self.argv:
            raise DevstackError(f"{self.name}: empty command")
        if os.sep not in self.argv[0]:
            self.argv[0] = find_binary(self.argv[0])
        elif not os.access(self.argv[0], os.X_OK):
            raise DevstackError(f"{self.name}: executable {self.argv[0]} not found or not executable")
        for port in self.ports:
            ensure_port_free(port, what=self.name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: stop() reaches every child
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        if self.ready is None:
            return
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DevstackError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready "
                    f"(command: {' '.join(self.argv)})\n--- log {self.log_path} ---\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise DevstackError(
            f"{self.name} was not ready within {self.start_timeout:.0f} s (command: {' '.join(self.argv)})\n"
            f"--- log {self.log_path} ---\n{self.log_tail()}"
        )

    def wait(self, timeout: float) -> int:
        """Wait until the command ends; its exit code. `DevstackError` with the log's tail when it runs
        longer than `timeout` seconds (it keeps running: `stop()`, or leaving the block, ends it)."""
        if self.proc is None:
            raise DevstackError(f"{self.name} is not started")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DevstackError(
                f"{self.name} did not finish within {timeout:.0f} s (command: {' '.join(self.argv)})\n"
                f"--- log {self.log_path} ---\n{self.log_tail()}"
            ) from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DevstackError(f"{self.name} is not started")
        return self.proc.pid

    def stop(self) -> None:
        """Terminate the process group: SIGTERM, then SIGKILL after `stop_timeout` seconds."""
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass
        # Children may outlive the leader (uvicorn/gunicorn workers): make sure the group is gone.
        deadline = time.monotonic() + self.stop_timeout
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        # SIGKILL is asynchronous: return only once the group has gone (orphans reaped by init).
        deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.proc = None

    def log_tail(self, max_chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-max_chars:]

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def loopback_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def http_server(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    ready_path: str,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    start_timeout: float = 60.0,
) -> ManagedProcess:
    """A server that listens on the loopback `port`: the port must be free before it starts, and it is
    ready once `GET ready_path` answers 2xx. Use it as a context manager, like any `ManagedProcess`."""
    ready_url = f"{loopback_url(port)}{ready_path}"
    return ManagedProcess(
        name,
        argv,
        env=env,
        cwd=cwd,
        log_path=log_path,
        ready=lambda: http_ok(ready_url),
        start_timeout=start_timeout,
        ports=(port,),
    )
