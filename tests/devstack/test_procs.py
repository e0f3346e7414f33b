"""The devstack launchers fail clearly and leave no process behind."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from devstack.moto import moto_s3
from devstack.procs import DevstackError, ManagedProcess, free_port, port_is_free


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_whole_process_group_is_stopped(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    # A leader that ignores SIGTERM, with children: stop() must still leave nothing behind.
    script = f"trap '' TERM; sleep 300 & sleep 300 & touch {marker}; wait"
    proc = ManagedProcess(
        "group", ["sh", "-c", script], ready=marker.exists, start_timeout=10, stop_timeout=2, log_path=tmp_path / "log"
    )
    with proc:
        pgid = proc.pid
        assert len(_group_members(pgid)) >= 3
    assert _group_members(pgid) == []


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(DevstackError, match=f"port 127.0.0.1:{port} is already in use"), moto_s3(port=port):
            pass


def test_missing_binary_is_a_clear_error() -> None:
    with (
        pytest.raises(DevstackError, match=r"no-such-binary-xyz.*not found"),
        ManagedProcess("x", ["no-such-binary-xyz"]),
    ):
        pass


def test_start_timeout_and_early_exit_show_the_log(tmp_path: Path) -> None:
    never = ManagedProcess(
        "never-ready",
        ["sh", "-c", "echo booting; sleep 30"],
        ready=lambda: False,
        start_timeout=1,
        log_path=tmp_path / "a.log",
    )
    started = time.monotonic()
    with pytest.raises(DevstackError, match=r"(?s)not ready within 1 s.*booting"), never:
        pass
    assert time.monotonic() - started < 25  # bounded: it did not wait for the command to end
    crash = ManagedProcess(
        "crash",
        ["sh", "-c", "echo broken config >&2; exit 3"],
        ready=lambda: False,
        start_timeout=30,
        log_path=tmp_path / "b.log",
    )
    with pytest.raises(DevstackError, match=r"(?s)exited with code 3.*broken config"), crash:
        pass


def test_moto_s3_creates_buckets_and_stops() -> None:
    with moto_s3(buckets=["one", "two"]) as s3:
        names = {b["Name"] for b in s3.client().list_buckets()["Buckets"]}
        assert {"one", "two"} <= names
        pid = s3.process.pid
    assert _group_members(pid) == []
    assert port_is_free(s3.port)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert os.getpid() > 0
