"""Every bad input is a 4xx naming the problem, never a 500; unknown alias 404 (no model yet:
test_variants_missing_aliases)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.models import iris_rows, train_and_register
from devstack.serving import ServingProcess, serving_service
from devstack.stack import MlflowStack
from tests.services.serving.conftest import ROW, predict

pytestmark = [pytest.mark.servers, pytest.mark.slow]

MAX_BATCH = 20
COL = "sepal length (cm)"


@pytest.fixture(scope="module")
def service(stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingProcess]:
    train_and_register(stack.tracking_uri, "validation-iris", alias="champion")
    logs = tmp_path_factory.mktemp("validation")
    with serving_service(
        stack.tracking_uri, "validation-iris", max_batch=MAX_BATCH, log_dir=logs, log_path=logs / "service.out"
    ) as svc:
        yield svc


def row(**changes: Any) -> dict[str, Any]:
    out = dict(ROW)
    for key, value in changes.items():
        if value is KeyError:
            out.pop(key.replace("_", " ") + " (cm)", None)
        else:
            out[key.replace("_", " ") + " (cm)"] = value
    return out


def raw(text: str) -> bytes:
    return text.encode()


CASES: list[tuple[str, bytes | Any, int, str]] = [
    ("missing column", {"rows": [row(sepal_length=KeyError)]}, 422, f"rows[0].{COL}"),
    ("unknown column", {"rows": [{**ROW, "colour": 1.0}]}, 422, "rows[0].colour"),
    ("string value", {"rows": [row(sepal_length="5.1")]}, 422, f"rows[0].{COL}"),
    ("boolean value", {"rows": [row(sepal_length=True)]}, 422, f"rows[0].{COL}"),
    ("null value", {"rows": [row(sepal_length=None)]}, 422, f"rows[0].{COL}"),
    ("nested value", {"rows": [row(sepal_length=[5.1])]}, 422, f"rows[0].{COL}"),
    (
        "huge integer",
        raw(
            '{"rows": [{"sepal length (cm)": 1' + "0" * 400 + ', "sepal width (cm)": 3.5, '
            '"petal length (cm)": 1.4, "petal width (cm)": 0.2}]}'
        ),
        422,
        f"rows[0].{COL}",
    ),
    (
        "NaN literal",
        raw(
            '{"rows": [{"sepal length (cm)": NaN, "sepal width (cm)": 3.5, '
            '"petal length (cm)": 1.4, "petal width (cm)": 0.2}]}'
        ),
        422,
        f"rows[0].{COL}",
    ),
    (
        "Infinity literal",
        raw(
            '{"rows": [{"sepal length (cm)": 5.1, "sepal width (cm)": -Infinity, '
            '"petal length (cm)": 1.4, "petal width (cm)": 0.2}]}'
        ),
        422,
        "rows[0].sepal width (cm)",
    ),
    ("bad second row", {"rows": [ROW, row(petal_width="x")]}, 422, "rows[1].petal width (cm)"),
    ("row not an object", {"rows": [ROW, 3]}, 422, "rows[1]"),
    ("empty batch", {"rows": []}, 422, "rows"),
    ("oversized batch", {"rows": iris_rows(MAX_BATCH + 1)}, 413, "rows"),
    ("rows not a list", {"rows": ROW}, 422, "rows"),
    ("no rows key", {"inputs": [ROW]}, 422, "rows"),
    ("body not an object", [ROW], 422, "body"),
    ("malformed JSON", raw('{"rows": [{"sepal length (cm)": 5.1,'), 400, "body"),
    ("not UTF-8", b'{"rows": [{"\xff\xfe": 1}]}', 400, "body"),
    ("empty body", b"", 400, "body"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("path", ["/predict", "/variants/champion/predict"])
def test_bad_input_is_4xx_naming_the_field(
    service: ServingProcess, path: str, case: str, body: Any, status: int, field: str
) -> None:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(
        f"{service.base_url}{path}", headers={"Content-Type": "application/json"}, timeout=30, **kwargs
    )
    assert response.status_code == status, (case, response.text)
    answer = response.json()
    assert answer["field"] == field, answer
    assert isinstance(answer["detail"], str) and answer["detail"]
    if field.startswith("rows[") and "." in field:
        assert field.split(".", 1)[1] in answer["detail"]


def test_oversized_body_in_bytes_is_413(service: ServingProcess) -> None:
    body = b'{"rows": [' + b" " * (MAX_BATCH * 4096 + 70000) + b"]}"
    response = httpx.post(f"{service.base_url}/predict", content=body, timeout=30)
    assert response.status_code == 413


def test_good_batch_answers_with_alias_and_version(service: ServingProcess) -> None:
    response = httpx.post(f"{service.base_url}/predict", json={"rows": iris_rows(MAX_BATCH, offset=40)}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["alias"] == "champion" and body["version"] == "1"
    assert len(body["predictions"]) == MAX_BATCH and set(body["predictions"]) <= {0, 1, 2}
    # iris rows 40..59 are classes 0 and 1 and the model is good: at least most are right
    truth = [0] * 10 + [1] * 10
    assert sum(p == t for p, t in zip(body["predictions"], truth, strict=True)) >= 18


def test_unknown_alias_is_404(service: ServingProcess) -> None:
    with httpx.Client(timeout=30) as client:
        response = predict(client, service.base_url, path="/variants/nope/predict")
    assert response.status_code == 404 and response.json()["field"] == "alias"
