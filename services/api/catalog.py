"""The model catalog as the API reads it: the JSON file `MLOPS_MODEL_CATALOG` names (`Catalog.for_airflow()`,
the same document the DAG factory reads, through the same reader `services.common.catalog_file`), re-read when
the file changes (a ConfigMap update).

The checks of a request reuse what the DAGs apply: `merge_params` of the catalog file (a param unknown to the
model, not a scalar, or of another type than its default is refused, naming the param) and the profile names of
the catalog. The DAG ids are the models' `dag_id` and `rollback_dag_id`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.api.errors import ApiError
from services.common import catalog_file
from services.common.catalog import ParamValue
from services.common.catalog_file import CatalogFileError, CatalogModel, merge_params

log = logging.getLogger("mlops.api.catalog")


@dataclass(frozen=True)
class CatalogSnapshot:
    models: dict[str, CatalogModel]
    profiles: tuple[str, ...]

    def model(self, name: str) -> CatalogModel:
        found = self.models.get(name)
        if found is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ApiError(404, f"unknown model {name!r}; the catalog has: {known}", "model")
        return found

    def check_params(self, model: CatalogModel, params: Mapping[str, Any]) -> dict[str, ParamValue]:
        """The run's params merged over the model's defaults; 422 naming the first wrong param."""
        defaults = model.spec.training.params
        for name, value in params.items():
            try:
                merge_params(defaults, {name: value})
            except ValueError as exc:
                raise ApiError(422, str(exc), f"params.{name}") from None
        return merge_params(defaults, params)

    def check_profile(self, model: CatalogModel, profile: str | None) -> None:
        """A known profile, and the model's own: its training DAG runs on the pod of the catalog's profile (fixed
        when the DAG is generated), so another profile could not be honoured."""
        if profile is None:
            return
        if profile not in self.profiles:
            known = ", ".join(self.profiles) or "none"
            raise ApiError(422, f"unknown profile {profile!r}; profiles: {known}", "profile")
        own = model.spec.training.profile
        if profile != own:
            raise ApiError(
                422,
                f"{model.name} trains on the profile {own!r} of its catalog entry; a run cannot choose another "
                f"(change training.profile in the catalog)",
                "profile",
            )


def parse(document: Mapping[str, Any]) -> CatalogSnapshot:
    """A snapshot of a `Catalog.for_airflow()` document; CatalogFileError naming every problem by its key path."""
    return CatalogSnapshot(models=catalog_file.parse(document), profiles=tuple(sorted(document["profiles"])))


class CatalogFile:
    """The catalog file, parsed again whenever its modification time or size changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[float, int] | None = None
        self._snapshot: CatalogSnapshot | None = None
        self._lock = threading.Lock()

    def current(self) -> CatalogSnapshot:
        """The catalog now. At start a missing or invalid file raises (the process does not start); later the
        last good snapshot stays in use while the file is missing or invalid (a ConfigMap being swapped)."""
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime, stat.st_size)
                if self._snapshot is None or stamp != self._stamp:
                    self._snapshot = parse(json.loads(self.path.read_text()))
                    self._stamp = stamp
            except (OSError, ValueError, CatalogFileError) as exc:
                if self._snapshot is None:
                    raise
                log.warning("catalog %s unreadable, keeping the last one: %s", self.path, exc)
            return self._snapshot
