"""Reading a service's settings from the contract's environment variables (services/common/contract.py): the one
error class and the one rule per kind of value, shared by the serving service and the platform API.

- `value`: the variable's text, or `default` when unset or empty. A secret variable may instead be given as a file:
  when `<NAME>_FILE` is set, its content (without the trailing newline) is the value (e.g. a mounted Secret);
- `required`: the same, and a `SettingsError` when it is missing;
- `number`: an int or a float, `default` when unset, within `minimum` (and `maximum` when given);
- `flag`: true/1/yes/on or false/0/no/off, `default` when unset.

Every `SettingsError` names the variable; the services print it and stop at start.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.common.contract import EnvVar

FILE_SUFFIX = "_FILE"
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


class SettingsError(ValueError):
    """A service setting is missing or invalid; the message names the variable."""


def file_variable(var: EnvVar) -> str:
    """The variable naming a file that holds a secret variable's value: `<NAME>_FILE`."""
    return f"{var.name}{FILE_SUFFIX}"


def value(var: EnvVar, default: str | None = None) -> str | None:
    """The variable's value (`default` when unset or empty); a secret one is read from `<NAME>_FILE` when set."""
    path = os.environ.get(file_variable(var)) if var.secret else None
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SettingsError(f"{file_variable(var)} ({path}) is unreadable: {exc.strerror or exc}") from None
        return text or default
    return var.get(default)


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
