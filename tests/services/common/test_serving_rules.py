"""The shared serving rules: each routing mode's own behaviour (aliases, shares, shadow, switch), the routing
as the pods' environment carries it, validation messages naming the field, and memory sizing; docs/serving.md
quotes the real default number of workers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.common.serving_rules import (
    DEFAULT_WORKERS,
    PROCESS_MEMORY_BYTES,
    ROUTING_MODES,
    ABRouting,
    BlueGreenRouting,
    CanaryRouting,
    FixedRouting,
    ShadowRouting,
    invalid_aliases,
    min_memory_bytes,
    parse_routing,
    quantity_bytes,
)

BEHAVIOUR: list[tuple[dict[str, Any], tuple[str, ...], dict[str, float], str | None, tuple[str, ...]]] = [
    ({"mode": "fixed", "alias": "champion"}, ("champion",), {"champion": 1.0}, None, ()),
    (
        {"mode": "ab", "weights": {"a": 5, "b": 3, "c": 2, "d": 0}},
        ("a", "b", "c", "d"),
        {"a": 0.5, "b": 0.3, "c": 0.2},
        None,
        (),
    ),
    (
        {"mode": "canary", "primary": "p", "challenger": "c", "percent": 10},
        ("p", "c"),
        {"p": 0.9, "c": 0.1},
        None,
        (),
    ),
    ({"mode": "canary", "primary": "p", "challenger": "c", "percent": 100}, ("p", "c"), {"c": 1.0}, None, ()),
    (
        {"mode": "blue-green", "active": "blue", "standby": "green"},
        ("blue", "green"),
        {"blue": 1.0},
        None,
        ("blue", "green"),
    ),
    ({"mode": "shadow", "primary": "p", "shadow": "s"}, ("p", "s"), {"p": 1.0}, "s", ()),
]


@pytest.mark.parametrize(
    ("raw", "aliases", "shares", "shadow", "pair"), BEHAVIOUR, ids=[b[0]["mode"] for b in BEHAVIOUR]
)
def test_each_mode_knows_its_aliases_shares_shadow_and_switch(
    raw: dict[str, Any], aliases: tuple[str, ...], shares: dict[str, float], shadow: str | None, pair: tuple[str, ...]
) -> None:
    routing = parse_routing(raw)
    assert routing.aliases() == aliases
    assert routing.shares() == pytest.approx(shares)
    assert list(routing.shares()) == list(shares)  # zero shares are left out, order kept
    assert routing.shadow_alias() == shadow
    assert routing.switch_pair() == pair


def test_every_mode_is_listed_once() -> None:
    assert ROUTING_MODES == ("fixed", "ab", "canary", "blue-green", "shadow")
    assert {parse_routing(b[0]).mode for b in BEHAVIOUR} == set(ROUTING_MODES)


def test_blue_green_shares_follow_the_switched_alias_and_other_modes_ignore_it() -> None:
    routing = BlueGreenRouting(active="blue", standby="green")
    assert routing.shares("green") == {"green": 1.0}
    assert routing.shares(None) == {"blue": 1.0}
    assert FixedRouting(alias="champion").shares("green") == {"champion": 1.0}


@pytest.mark.parametrize(
    ("routing", "env"),
    [
        (FixedRouting(alias="champion"), '{"alias": "champion", "mode": "fixed"}'),
        (
            CanaryRouting(primary="champion", challenger="challenger", percent=10),
            '{"challenger": "challenger", "mode": "canary", "percent": 10, "primary": "champion"}',
        ),
        (
            CanaryRouting(primary="champion", challenger="challenger", percent=12.5),
            '{"challenger": "challenger", "mode": "canary", "percent": 12.5, "primary": "champion"}',
        ),
        (ABRouting(weights={"b": 30, "a": 70.0}), '{"mode": "ab", "weights": {"a": 70, "b": 30}}'),
        (ShadowRouting(primary="p", shadow="s"), '{"mode": "shadow", "primary": "p", "shadow": "s"}'),
    ],
)
def test_env_value_is_sorted_json_with_whole_numbers_whole(routing: Any, env: str) -> None:
    assert routing.env_value() == env
    assert parse_routing(json.loads(env)) == routing  # what the pods read back is the same routing


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mode": "random"}, "expected tags: 'fixed', 'ab', 'canary', 'blue-green', 'shadow'"),
        ({"mode": "canary", "primary": "a", "challenger": "b", "percent": 150}, "percent: Input should be less than"),
        (
            {"mode": "canary", "primary": "a", "challenger": "a", "percent": 5},
            "canary primary and challenger must differ",
        ),
        ({"mode": "ab", "weights": {}}, "at least one alias with a positive weight"),
        ({"mode": "ab", "weights": {"a": float("inf")}}, "weights.a: Input should be a finite number"),
        ({"mode": "fixed", "alias": "bad alias"}, "alias: String should match pattern"),
        ({"mode": "fixed", "alias": "a", "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_invalid_routing_names_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_routing(raw)
    assert message in str(err.value)


def test_invalid_aliases_are_the_ones_outside_the_pattern() -> None:
    assert invalid_aliases(["champion", "1st", "_x", "-x", "a" * 64]) == []
    assert invalid_aliases(["ok", "", "a" * 65, "bad alias", "é", "a.b", 3]) == [
        "",
        "a" * 65,
        "bad alias",
        "é",
        "a.b",
        3,
    ]


def test_memory_quantities_and_minimum() -> None:
    assert quantity_bytes("512Mi") == 512 * 2**20
    assert quantity_bytes("1Gi") == 2**30
    assert quantity_bytes("1.5Gi") == 3 * 2**29
    assert quantity_bytes("2G") == 2 * 10**9
    assert quantity_bytes("1048576") == 2**20
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity_bytes("lots")
    assert min_memory_bytes(3) == 3 * PROCESS_MEMORY_BYTES


def test_docs_quote_the_default_workers() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "serving.md").read_text(encoding="utf-8")
    quoted = re.findall(r"`DEFAULT_WORKERS` = (\d+)", text)
    assert quoted, "docs/serving.md no longer quotes DEFAULT_WORKERS"
    assert {int(n) for n in quoted} == {DEFAULT_WORKERS}
