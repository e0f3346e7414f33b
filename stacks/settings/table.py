"""The table of every setting that docs/configuration.md shows (`make docs`)."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from stacks.settings.airflow import GIT_CREDENTIAL_FIELDS, GIT_CREDENTIALS_PREFIX, GIT_KNOWN_HOSTS_KEY
from stacks.settings.engine import PROJECT, Meta
from stacks.settings.loading import declared


def settings_table() -> str:
    """Markdown table of every setting (used by docs/configuration.md)."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, meta, annotation in declared():
        if meta.default_fn is not None:
            default = f"dev: `{_fmt(meta.default_fn('dev'))}`, prod: `{_fmt(meta.default_fn('prod'))}`"
        elif meta.default is not None:
            default = f"`{_fmt(meta.default)}`"
        else:
            default = "required" if meta.required else "unset"
        kind = "secret" if meta.secret else _type_name(annotation, meta)
        rows.append(f"| `{PROJECT}:{key}` | {kind} | {default} | {meta.doc} |")
        if key == GIT_KNOWN_HOSTS_KEY:  # the named git credentials, one key each
            for part, (_, secret, doc) in GIT_CREDENTIAL_FIELDS.items():
                kind = "secret" if secret else "str"
                rows.append(f"| `{PROJECT}:{GIT_CREDENTIALS_PREFIX}<name>.{part}` | {kind} | unset | {doc} |")
    return "\n".join(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)


def _type_name(annotation: Any, meta: Meta) -> str:
    if meta.choices:
        return " \\| ".join(meta.choices)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
        origin = get_origin(annotation)
    if origin is tuple:
        return "list"
    if origin in (Mapping, dict) or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "object"
    return getattr(annotation, "__name__", str(annotation))
