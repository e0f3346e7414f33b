"""The services' one settings reader: a missing required variable, a number out of bounds or of the wrong kind
and a word that is no flag each raise the one SettingsError naming the variable; a secret variable is read from
its `<NAME>_FILE` when set (and such a file that cannot be read is an error naming it), a plain one never is."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common import env_settings
from services.common.contract import EnvVar
from services.common.env_settings import SettingsError, flag, number, required, value

PLAIN = EnvVar("MLOPS_TEST_PLAIN", "a plain test variable")
SECRET = EnvVar("MLOPS_TEST_SECRET", "a secret test variable", secret=True)


def test_required_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLAIN.name, raising=False)
    with pytest.raises(SettingsError, match=f"environment variable {PLAIN.name} is not set: a plain test variable"):
        required(PLAIN)
    monkeypatch.setenv(PLAIN.name, "x")
    assert required(PLAIN) == "x"


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [(None, int, 7), ("3", int, 3), ("2.5", float, 2.5), ("x", int, "must be a int"), ("0", int, "must be >= 1")],
)
def test_number(monkeypatch: pytest.MonkeyPatch, raw: str | None, kind: type[int], expected: object) -> None:
    if raw is None:
        monkeypatch.delenv(PLAIN.name, raising=False)
    else:
        monkeypatch.setenv(PLAIN.name, raw)
    if isinstance(expected, str):
        with pytest.raises(SettingsError, match=f"{PLAIN.name} {expected}"):
            number(PLAIN, 7, minimum=1, kind=kind)
    else:
        assert number(PLAIN, 7, minimum=1, kind=kind) == expected


def test_number_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLAIN.name, "31")
    with pytest.raises(SettingsError, match=f"{PLAIN.name} must be <= 30, got '31'"):
        number(PLAIN, 1.0, minimum=0.1, maximum=30)
    monkeypatch.setenv(PLAIN.name, "30")
    assert number(PLAIN, 1.0, minimum=0.1, maximum=30) == 30


@pytest.mark.parametrize(("raw", "expected"), [(None, True), ("off", False), ("YES", True), ("0", False)])
def test_flag(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: bool) -> None:
    if raw is None:
        monkeypatch.delenv(PLAIN.name, raising=False)
    else:
        monkeypatch.setenv(PLAIN.name, raw)
    assert flag(PLAIN, default=True) is expected


def test_flag_refuses_other_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLAIN.name, "maybe")
    with pytest.raises(SettingsError, match=f"{PLAIN.name} must be true or false, got 'maybe'"):
        flag(PLAIN, default=False)


def test_secret_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv(SECRET.name, "from-env")
    monkeypatch.setenv(env_settings.file_variable(SECRET), str(secret_file))
    assert required(SECRET) == "s3cret"  # the file wins, without its newline
    monkeypatch.setenv(env_settings.file_variable(SECRET), str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=f"{SECRET.name}_FILE .* is unreadable"):
        value(SECRET)


def test_plain_variable_ignores_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("from-file", encoding="utf-8")
    monkeypatch.setenv(PLAIN.name, "from-env")
    monkeypatch.setenv(env_settings.file_variable(PLAIN), str(other))
    assert value(PLAIN) == "from-env"
