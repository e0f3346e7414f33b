"""Shadow agreement by the model's rule (MLOPS_SERVING_SHADOW_AGREEMENT), in this process:

- with the default rule, exact, a shadow whose numbers differ by 3% from the primary's disagrees;
- with `relative` 5%, the same shadow agrees and one 20% off disagrees; `absolute` compares the difference;
- what is counted is what `serving_shadow_comparisons_total{outcome}` and the `shadow.compared` log show;
- a wrong rule stops the service at start with a message naming the variable and the field.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from services.common import contract
from services.common.serving_rules import Agreement, ShadowRouting
from services.serving.app import create_app
from services.serving.routes.deps import ServingState
from services.serving.settings import Settings, SettingsError
from tests.services.serving.conftest import call
from tests.services.serving.test_routing_readiness import numbers_variant

SHADOW = ShadowRouting(primary="champion", shadow="challenger")


def shadow_app(env: pytest.MonkeyPatch, agreement: Agreement | None, factor: float) -> FastAPI:
    """A model in shadow routing whose challenger answers `factor` times the champion's sum of `x`."""
    env.setenv(contract.SERVING_ROUTING.name, SHADOW.env_value())
    if agreement is not None:
        env.setenv(contract.SERVING_SHADOW_AGREEMENT.name, agreement.env_value())
    app = create_app()
    app.state.serving = ServingState.build(app.state.settings)
    manager = app.state.serving.manager
    for alias in ("champion", "challenger"):
        manager._mark_missing(alias, False, "1")
    manager._swap(numbers_variant("champion", "1"))
    challenger = numbers_variant("challenger", "2")
    manager._swap(dataclasses.replace(challenger, predict=lambda m: [v * factor for v in challenger.predict(m)]))
    return app


@pytest.fixture
def apps() -> Iterator[list[FastAPI]]:
    made: list[FastAPI] = []
    yield made
    for app in made:
        app.state.serving.manager.close()


def outcomes(app: FastAPI, rows: list[float]) -> dict[str, float]:
    """Send one request per value of `x`, wait for every shadow comparison, and read the counter."""

    async def run() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            for x in rows:
                answer = await client.post("/predict", json={"rows": [{"x": x}, {"x": x + 1}]})
                assert answer.status_code == 200 and answer.json()["alias"] == "champion", answer.text
                await asyncio.gather(*app.state.serving.shadow_tasks)

    asyncio.run(run())
    text = call(app, "GET", "/metrics").text
    counted = {o: 0.0 for o in ("agree", "differ", "error", "skipped")}
    for outcome in counted:
        match = re.search(rf'^serving_shadow_comparisons_total{{outcome="{outcome}"}} (\S+)$', text, re.MULTILINE)
        counted[outcome] = float(match.group(1)) if match else 0.0
    assert counted["error"] == counted["skipped"] == 0, counted
    return {"agree": counted["agree"], "differ": counted["differ"]}


def test_exact_by_default_so_a_regression_three_percent_off_disagrees(
    env: pytest.MonkeyPatch, apps: list[FastAPI]
) -> None:
    apps.append(app := shadow_app(env, None, 1.03))
    assert app.state.settings.shadow_agreement == Agreement()
    assert outcomes(app, [1.0, 2.0, 3.0]) == {"agree": 0, "differ": 3}


@pytest.mark.parametrize(
    ("agreement", "factor", "expected"),
    [
        (Agreement(mode="relative", tolerance=0.05), 1.03, {"agree": 3, "differ": 0}),
        (Agreement(mode="relative", tolerance=0.05), 1.2, {"agree": 0, "differ": 3}),
        (Agreement(mode="relative", tolerance=0.05), 1.0, {"agree": 3, "differ": 0}),
        # the rows answer x and x + 1 (1 and 2, 2 and 3, 3 and 4): 4% off is 0.04 to 0.16, all inside 0.5;
        # within 0.1 only for the first request (0.04 and 0.08)
        (Agreement(mode="absolute", tolerance=0.5), 1.04, {"agree": 3, "differ": 0}),
        (Agreement(mode="absolute", tolerance=0.1), 1.04, {"agree": 1, "differ": 2}),
    ],
)
def test_a_tolerance_makes_close_numbers_agree_and_far_ones_differ(
    env: pytest.MonkeyPatch, apps: list[FastAPI], agreement: Agreement, factor: float, expected: dict[str, float]
) -> None:
    apps.append(app := shadow_app(env, agreement, factor))
    assert outcomes(app, [1.0, 2.0, 3.0]) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"mode": "exact", "tolerance": 0.1}', "tolerance: exact agreement takes no tolerance"),
        ('{"mode": "relative", "tolerance": 5}', "tolerance: a relative tolerance is a fraction below 1"),
        ('{"mode": "close"}', "mode: Input should be 'exact', 'absolute' or 'relative'"),
        ('{"mode": "absolute", "tolerance": -1}', "tolerance: Input should be greater than or equal to 0"),
        ("relative", "Expecting value"),
    ],
)
def test_a_wrong_rule_stops_the_service_naming_the_variable_and_field(
    env: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    env.setenv(contract.SERVING_SHADOW_AGREEMENT.name, raw)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert str(caught.value).startswith(f"{contract.SERVING_SHADOW_AGREEMENT.name} is invalid: ")
    assert message in str(caught.value)


def test_non_numbers_and_lengths_are_compared_exactly_in_every_mode() -> None:
    loose = Agreement(mode="relative", tolerance=0.5)
    assert loose.agrees(["setosa", 1.0], ["setosa", 1.2])
    assert not loose.agrees(["setosa"], ["virginica"])
    assert not loose.agrees([1.0, 2.0], [1.0])
    assert not loose.agrees([True], [1.0])  # a boolean is a class, not a number
    assert loose.agrees([[0.2, 0.8]], [[0.25, 0.75]])  # probabilities element by element
    assert not loose.agrees([[0.2, 0.8]], [0.2, 0.8])
    assert Agreement(mode="absolute", tolerance=0.0).agrees([1.5], [1.5])
