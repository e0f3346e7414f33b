"""Each model's endpoints at run time, from its catalog entry and the endpoints contract.

The MLflow URL and the serving admin token come from the contract (`services.common.contract`); the model's own
serving URLs come from its entry of the model catalog (`serving_url`, `reload_url`).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.catalog_file import CatalogModel
from services.common.contract import MLFLOW_TRACKING_URI, RELOAD_TOKEN


@dataclass(frozen=True)
class Endpoints:
    tracking_uri: str
    serving_url: str
    reload_url: str
    reload_token: str | None

    @classmethod
    def for_model(cls, entry: CatalogModel) -> Endpoints:
        """The endpoints of one model: MLflow and the token from the contract, its serving from the catalog."""
        return cls(
            tracking_uri=MLFLOW_TRACKING_URI.require(),
            serving_url=entry.serving_url,
            reload_url=entry.reload_url,
            reload_token=RELOAD_TOKEN.read_secret(),  # from MLOPS_SERVING_RELOAD_TOKEN_FILE on the cluster
        )
