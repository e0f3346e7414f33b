"""Journey: a model's routing changes at run time through the platform API, with no deploy and no restart.

Real MLflow (PostgreSQL + moto S3), two serving replicas of one model (one with two workers) started with the
stack's routing (`fixed` on the champion), and the platform API on a fresh database:

- `PUT /v1/models/{model}/routing` (deploy scope) records a canary at 50% with who and why; every worker of every
  replica applies it within its poll period: `/models` shows it with its source, and predictions split by the
  client hash;
- a routing naming an alias the deployment does not load is refused by the API (409 naming `routing`), and no
  replica sees it;
- `DELETE` brings the stack's routing back everywhere.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.api import ApiProcess, api_process, token_for
from devstack.postgres import fresh_database
from devstack.procs import DevstackError
from services.serving.routing import client_point
from tests.services.api.conftest import catalog_document
from tests.services.serving.conftest import ROW, MlflowStack, Model, models_of, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]

CANARY_50 = {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 50}
CLIENTS = [f"client-{i}" for i in range(120)]


@pytest.fixture
def api_for(
    stack: MlflowStack, tmp_path: Path, postgres_available: tuple[str, int]
) -> Iterator[Callable[[str], ApiProcess]]:
    """`api_for(model)`: the platform API against the real MLflow, with a catalog holding `model`."""
    with fresh_database("api_routing") as url, contextlib.ExitStack() as exits:

        def start(model: str) -> ApiProcess:
            spec = {
                "training": {"entrypoint": "iris_model.train:train"},
                "gate": {"metric": "test_accuracy"},
                "serving": {"aliases": ["champion", "challenger"], "routing": {"mode": "fixed", "alias": "champion"}},
            }
            catalog = tmp_path / "catalog.json"
            catalog.write_text(json.dumps(catalog_document({model: spec})))
            try:
                return exits.enter_context(
                    api_process(
                        tmp_path / "api.log",
                        database=url.rsplit("/", 1)[1],
                        airflow_url="http://127.0.0.1:9",
                        tracking_uri=stack.tracking_uri,
                        catalog=catalog,
                        airflow_user=("nobody", "nothing"),
                    )
                )
            except DevstackError as exc:
                pytest.fail(f"the API did not start: {exc}")

        yield start


def routing_everywhere(bases: list[str], expected: dict[str, Any], source: str) -> Callable[[], bool]:
    """True once ten answers of every replica's /models in a row (any worker) show `expected` from `source`."""

    def check() -> bool:
        for base in bases:
            for _ in range(10):
                models = models_of(base)
                if models["routing"] != expected or models["routing_source"]["source"] != source:
                    return False
        return True

    return check


def test_a_routing_set_through_the_api_reaches_every_replica_and_goes_back(
    stack: MlflowStack, start_service: Callable[..., Any], api_for: Callable[[str], ApiProcess]
) -> None:
    model = Model(stack=stack, name=f"routing-{secrets.token_hex(3)}")  # a catalog name (at most 40 characters)
    model.add(alias="champion", C=1.0)
    model.add(alias="challenger", C=0.01)
    champion, challenger = (v.version for v in model.versions)
    replicas = [
        start_service(model, aliases=("champion", "challenger"), poll_seconds=0.5, workers=workers)
        for workers in (2, 1)
    ]
    bases = [r.base_url for r in replicas]
    api = api_for(model.name)
    deployer = token_for(api, "read", "deploy", name="release-bot")
    with api.client(deployer) as client:
        refused = client.put(
            f"/v1/models/{model.name}/routing", json={"routing": {"mode": "fixed", "alias": "blue"}, "reason": "x"}
        )
        assert refused.status_code == 409 and refused.json()["field"] == "routing", refused.text
        answer = client.put(f"/v1/models/{model.name}/routing", json={"routing": CANARY_50, "reason": "canary 50%"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["by"] == "api:release-bot" and answer.json()["source"] == "registry"
        wait_until(routing_everywhere(bases, CANARY_50, "registry"), 30, "every replica routing by the canary")
        assert client.get(f"/v1/models/{model.name}/routing").json()["routing"] == CANARY_50
    source = models_of(bases[1])["routing_source"]
    assert (source["by"], source["reason"]) == ("api:release-bot", "canary 50%")
    with httpx.Client(timeout=30) as http:
        for base in bases:
            answers = [
                http.post(f"{base}/predict", json={"rows": [ROW]}, headers={"X-Client-Id": c}).json() for c in CLIENTS
            ]
            assert [(a["alias"], a["version"]) for a in answers] == [
                ("challenger", challenger) if client_point(c) >= 0.5 else ("champion", champion) for c in CLIENTS
            ]
    with api.client(deployer) as client:
        assert client.delete(f"/v1/models/{model.name}/routing").json()["source"] == "stack"
    wait_until(
        routing_everywhere(bases, {"mode": "fixed", "alias": "champion"}, "stack"), 30, "the stack's routing back"
    )
