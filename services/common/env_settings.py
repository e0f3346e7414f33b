"""Reading a service's settings from the contract's environment variables (services/common/contract.py): the one
error class and the one rule per kind of value, shared by the serving service and the platform API.

- `value`: the variable's text, or `default` when unset or empty. A secret variable may instead be given as a file:
  when `<NAME>_FILE` is set, its content (without the trailing newline) is the value (e.g. a mounted Secret: the
  platform's pods get credentials only this way, see services/common/contract.py);
- `mlflow_credentials`: the MLflow client's user and password, from MLflow's variables or its credentials file;
- `required`: the same, and a `SettingsError` when it is missing;
- `number`: an int or a float, `default` when unset, within `minimum` (and `maximum` when given);
- `flag`: true/1/yes/on or false/0/no/off, `default` when unset.

Every `SettingsError` names the variable; the services print it and stop at start.
"""

from __future__ import annotations

import configparser
import os

from services.common.contract import (
    FILE_SUFFIX,
    MLFLOW_CREDENTIALS_SECTION,
    MLFLOW_TRACKING_PASSWORD,
    MLFLOW_TRACKING_USERNAME,
    EnvVar,
    mlflow_credentials_file,
)

__all__ = ["FILE_SUFFIX", "SettingsError", "file_variable", "flag", "mlflow_credentials", "number", "required", "value"]
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


class SettingsError(ValueError):
    """A service setting is missing or invalid; the message names the variable."""


def file_variable(var: EnvVar) -> str:
    """The variable naming a file that holds a secret variable's value: `<NAME>_FILE`."""
    return var.file_variable


def value(var: EnvVar, default: str | None = None) -> str | None:
    """The variable's value (`default` when unset or empty); a secret one (or one marked `file`) is read from
    `<NAME>_FILE` when set (`EnvVar.read_secret`)."""
    try:
        return var.read_secret(default)
    except OSError as exc:
        path = os.environ.get(file_variable(var))
        raise SettingsError(f"{file_variable(var)} ({path}) is unreadable: {exc.strerror or exc}") from None


def mlflow_credentials(home: str | None = None) -> tuple[str | None, str | None]:
    """The MLflow client's user and password as MLflow itself finds them: its variables
    (MLFLOW_TRACKING_USERNAME/PASSWORD) where set, else its credentials file `$HOME/.mlflow/credentials` (the
    platform mounts it from the MLflow-credentials Secret). (None, None) when neither is there."""
    username, password = MLFLOW_TRACKING_USERNAME.get(), MLFLOW_TRACKING_PASSWORD.get()
    path = mlflow_credentials_file(home)
    if not (username and password) and path.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read_string(path.read_text(encoding="utf-8"))
        except (OSError, configparser.Error) as exc:
            raise SettingsError(f"MLflow's credentials file {path} is unreadable: {exc}") from None
        section = parser[MLFLOW_CREDENTIALS_SECTION] if parser.has_section(MLFLOW_CREDENTIALS_SECTION) else {}
        username = username or section.get(MLFLOW_TRACKING_USERNAME.name.lower())
        password = password or section.get(MLFLOW_TRACKING_PASSWORD.name.lower())
    return username or None, password or None


def required(var: EnvVar) -> str:
    found = value(var)
    if found is None:
        raise SettingsError(f"environment variable {var.name} is not set: {var.description}")
    return found


def number(
    var: EnvVar,
    default: float,
    *,
    minimum: float,
    maximum: float | None = None,
    kind: type[int] | type[float] = float,
) -> float:
    """The variable as a number of `kind` (`default` when unset) within [minimum, maximum]."""
    raw = value(var)
    if raw is None:
        return default
    try:
        parsed = kind(raw)
    except ValueError:
        raise SettingsError(f"{var.name} must be a {kind.__name__}, got {raw!r}") from None
    if parsed < minimum:
        raise SettingsError(f"{var.name} must be >= {minimum}, got {raw!r}")
    if maximum is not None and parsed > maximum:
        raise SettingsError(f"{var.name} must be <= {maximum}, got {raw!r}")
    return parsed


def flag(var: EnvVar, *, default: bool) -> bool:
    raw = value(var)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise SettingsError(f"{var.name} must be true or false, got {raw!r}")
